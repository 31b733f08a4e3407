"""Amazon "Scientific" (UniSRec preprocessing): chronological purchase sequences with item text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmrec.data.dataset import Dataset, IdMap, Interactions, ItemTable
from lmrec.data.loaders.base import require_files
from lmrec.types import EventKind

TOP = "Industrial & Scientific"
# Second-level departments of Amazon's "Industrial & Scientific" category. The category path
# in Scientific.text is space-joined, so only these known names can be split off reliably;
# the rest of the path is kept as text field "description".
DEPARTMENTS = (
    "Abrasive & Finishing Products", "Additive Manufacturing Products", "Commercial Door Products",
    "Cutting Tools", "Fasteners", "Filtration", "Food Service Equipment & Supplies",
    "Hydraulics, Pneumatics & Plumbing", "Industrial Electrical", "Industrial Hardware",
    "Industrial Power & Hand Tools", "Janitorial & Sanitation Supplies", "Lab & Scientific Products",
    "Material Handling Products", "Occupational Health & Safety Products", "Packaging & Shipping Supplies",
    "Power Transmission Products", "Professional Dental Supplies", "Professional Medical Supplies",
    "Raw Materials", "Retail Store Fixtures & Equipment", "Robotics", "Science Education",
    "Tapes, Adhesives & Sealants", "Test, Measure & Inspect",
)
_FILES = ["Scientific.text", "Scientific.item2index", "Scientific.user2index",
          "Scientific.valid.inter", "Scientific.test.inter"]


def split_item_text(text: str) -> tuple[str, list[str], str, str]:
    """(title, categories, description, brand) from "title. category path. brand. ".

    The category path starts with "Industrial & Scientific" (searched from the right, since
    titles and brands may contain ". "); an empty path shows as ". . ". Categories are the top
    level and the department; the rest of the path becomes the description. Text that fits
    neither pattern gives title = text up to the first ". " and description = the rest.
    """
    body = text.strip()
    body = body[:-1] if body.endswith(".") else body
    cut = body.rfind(". " + TOP)
    if cut >= 0:
        title, rest = body[:cut], body[cut + 2:]
        end = rest.find(". ")
        path, brand = (rest, "") if end < 0 else (rest[:end], rest[end + 2:])
        below = path[len(TOP):].strip()
        dept = next((d for d in DEPARTMENTS if below == d or below.startswith(d + " ")), None)
        if dept is None:
            return title.strip(), [TOP], below, brand.strip()
        return title.strip(), [TOP, dept], below[len(dept):].strip(), brand.strip()
    cut = body.rfind(". . ")
    if cut >= 0:
        return body[:cut].strip(), [], "", body[cut + 4:].strip()
    title, _, rest = body.partition(". ")
    return title.strip(), [], rest.strip(), ""


def _read_pairs(path: Path) -> dict[str, int]:
    out = {}
    for ln in path.read_text(encoding="utf-8").splitlines():
        if ln.strip():
            key, idx = ln.split("\t")
            out[key] = int(idx)
    return out


def _read_inter(path: Path) -> dict[int, tuple[list[int], int]]:
    """{user index: (history, target)} of a RecBole .inter file with one row per user."""
    out = {}
    for ln in path.read_text(encoding="utf-8").splitlines()[1:]:
        if ln.strip():
            u, hist, target = ln.split("\t")
            out[int(u)] = ([int(x) for x in hist.split()], int(target))
    return out


def load_amazon_scientific(folder: Path) -> Dataset:
    """8,442 users' purchase sequences over 4,385 items (PURCHASE events, value 1).

    Each user's sequence is the test history plus the test target; timestamps are positions
    in the sequence (`has_timestamps=False`). The given split is leave-one-out: train =
    sequence[:-2], valid = the valid target (second-to-last), test = the test target (last).
    Histories are truncated to the last 50 items upstream, so for users with longer histories
    the valid history starts earlier than the test history; only the test window is used and
    such users are counted in `info["truncated_users"]`. A valid target that is not the
    second-to-last item is counted in `info["inconsistent_valid"]` (the position wins).
    """
    require_files("amazon-scientific", folder, _FILES)
    item2index = _read_pairs(folder / "Scientific.item2index")
    user2index = _read_pairs(folder / "Scientific.user2index")
    idx2item = {v: k for k, v in item2index.items()}
    idx2user = {v: k for k, v in user2index.items()}
    items = IdMap(item2index)
    users = IdMap(user2index)
    item_pos = {i: items.index(a) for i, a in idx2item.items()}

    test = _read_inter(folder / "Scientific.test.inter")
    valid = _read_inter(folder / "Scientific.valid.inter")
    u_col, i_col, t_col, role = [], [], [], []
    truncated = inconsistent = 0
    for uidx in sorted(test):
        hist, target = test[uidx]
        seq = hist + [target]
        if uidx in valid:
            vhist, vtarget = valid[uidx]
            if vtarget != seq[-2]:
                inconsistent += 1
            elif vhist != hist[:-1]:
                truncated += 1
        u = users.index(idx2user[uidx])
        n = len(seq)
        u_col += [u] * n
        i_col += [item_pos[i] for i in seq]
        t_col += list(range(n))
        role += [0] * (n - 2) + [1, 2] if n >= 3 else [0] * n
    user_a, item_a, ts_a, role_a = (np.asarray(x, dtype=np.int64) for x in (u_col, i_col, t_col, role))
    kind = np.full(len(user_a), int(EventKind.PURCHASE), dtype=np.int8)
    inter = Interactions(user_a, item_a, ts_a, kind)
    split = {name: inter.select(role_a == r) for r, name in enumerate(("train", "valid", "test"))}

    texts: dict[str, str] = {}
    for ln in (folder / "Scientific.text").read_text(encoding="utf-8").splitlines()[1:]:
        if ln.strip():
            asin, _, text = ln.partition("\t")
            texts[asin] = text
    parts = [split_item_text(texts.get(a, "")) for a in items.ids]
    table = ItemTable(
        title=[p[0] for p in parts],
        categories=[p[1] for p in parts],
        text={"description": [p[2] for p in parts], "full_text": [texts.get(a, "") for a in items.ids]},
        attributes={"brand": [p[3] for p in parts]},
    )
    return Dataset("amazon-scientific", users, items, inter, item_table=table, has_timestamps=False,
                   given_split=split,
                   info={"source": str(folder), "timestamps": "position in the user's sequence",
                         "truncated_users": truncated, "inconsistent_valid": inconsistent,
                         "items_without_text": sum(1 for a in items.ids if a not in texts)})
