"""Downloading the data sets whose license allows fetching them from the source (MovieLens 100K)."""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# SHA-256 of the official ml-100k.zip (4,924,029 bytes; GroupLens publishes the MD5
# 0e33842e24a9c977be4e0107933c0723 for the same archive). The archive has been unchanged since 1998.
ML100K_ZIP_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
ML100K_FOLDER = "movielens-100k"
# The files kept, with the names used in the shared data folder (the archive's ml-100k/ prefix
# is dropped; the u1-u5 / ub splits and scripts are not extracted).
ML100K_FILES = ("README", "u.data", "u.item", "u.user", "u.genre", "u.occupation", "u.info",
                "ua.base", "ua.test")
# Content checks after extraction, on top of the checksum: exact row counts.
ML100K_ROWS = {"u.data": 100_000, "u.item": 1_682, "u.user": 943, "ua.base": 90_570, "ua.test": 9_430}


class DownloadError(RuntimeError):
    """A download failed: offline, HTTP error, checksum or content mismatch."""


def _fetch(url: str, timeout: float, target: Path) -> bytes:
    host = url.split("/")[2] if "://" in url else url
    try:
        with urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except HTTPError as e:
        raise DownloadError(f"{host} answered HTTP {e.code} ({e.reason}) for {url}") from e
    except (URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(
            f"could not reach {host}: {reason}; you appear to be offline. Put the files in {target} "
            f"or set LMREC_DATA_DIR to a folder that has them") from e


def download_movielens_100k(dest: Path | None = None, *, url: str = ML100K_URL,
                            sha256: str = ML100K_ZIP_SHA256, timeout: float = 60.0,
                            force: bool = False) -> Path:
    """Download MovieLens 100K into `dest/movielens-100k/` (default dest: the data directory)
    and return that folder. Verifies the archive's SHA-256 and the row counts of the files;
    does nothing when the files are already there (unless `force`)."""
    if dest is None:
        from lmrec.settings import data_dir

        dest = data_dir()
    target = Path(dest) / ML100K_FOLDER
    if not force and all((target / n).is_file() for n in ML100K_FILES):
        return target
    payload = _fetch(url, timeout, target)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise DownloadError(f"checksum mismatch for {url}: expected SHA-256 {sha256}, got {digest} "
                            f"({len(payload)} bytes); the download is corrupt or the file changed upstream")
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{url} is not a valid zip archive: {e}") from e
    members = {Path(n).name: n for n in archive.namelist() if not n.endswith("/")}
    missing = [n for n in ML100K_FILES if n not in members]
    if missing:
        raise DownloadError(f"{url}: archive lacks {', '.join(missing)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".ml-100k-") as tmp:
        staging = Path(tmp)
        for n in ML100K_FILES:
            (staging / n).write_bytes(archive.read(members[n]))
        _verify_rows(staging)
        target.mkdir(exist_ok=True)
        for n in ML100K_FILES:
            shutil.move(str(staging / n), str(target / n))
    return target


def _verify_rows(folder: Path) -> None:
    for name, expected in ML100K_ROWS.items():
        rows = sum(1 for ln in (folder / name).read_bytes().splitlines() if ln.strip())
        if rows != expected:
            raise DownloadError(f"{name} has {rows} rows, expected {expected}; the download is not the "
                                f"MovieLens 100K release")


DOWNLOADS: dict[str, Callable[..., Path]] = {"ml-100k": download_movielens_100k}


def download(name: str, dest: Path | None = None, **kwargs: object) -> Path:
    """Download a registered data set by name (only those whose terms allow it)."""
    if name not in DOWNLOADS:
        raise DownloadError(
            f"no automatic download for {name!r} (available: {', '.join(DOWNLOADS)}); get it from its "
            f"source and put it in the data directory (LMREC_DATA_DIR)")
    return DOWNLOADS[name](dest, **kwargs)
