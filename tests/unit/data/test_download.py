"""MovieLens 100K download with a fake urlopen (no network): success, checksum, offline."""

from __future__ import annotations

import hashlib
import io
import socket
import zipfile
from urllib.error import HTTPError, URLError

import pytest

from lmrec.data import download as dl
from lmrec.data.download import DownloadError, download, download_movielens_100k


def fake_zip(u_data_rows: int = 100_000) -> bytes:
    """A zip shaped like ml-100k.zip with the right row counts and dummy content."""
    rows = {"u.data": u_data_rows, "u.item": 1682, "u.user": 943, "ua.base": 90_570, "ua.test": 9_430}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ml-100k/", "")
        for name in dl.ML100K_FILES:
            n = rows.get(name, 3)
            z.writestr(f"ml-100k/{name}", "1\t1\t5\t881250949\n" * n)
        z.writestr("ml-100k/u1.base", "ignored\n")
    return buf.getvalue()


class FakeResponse(io.BytesIO):
    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def patch_urlopen(monkeypatch, payload=None, error=None):
    calls = []

    def fake(url, timeout=None):
        calls.append(url)
        if error is not None:
            raise error
        return FakeResponse(payload)

    monkeypatch.setattr(dl, "urlopen", fake)
    return calls


def test_download_success_and_skip_when_present(tmp_path, monkeypatch):
    payload = fake_zip()
    calls = patch_urlopen(monkeypatch, payload)
    out = download_movielens_100k(tmp_path, sha256=hashlib.sha256(payload).hexdigest())
    assert out == tmp_path / "movielens-100k" and calls == [dl.ML100K_URL]
    assert sorted(p.name for p in out.iterdir()) == sorted(dl.ML100K_FILES)
    assert len((out / "u.data").read_text().splitlines()) == 100_000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ml-100k-")]  # staging removed
    assert download_movielens_100k(tmp_path) == out and len(calls) == 1  # already there: no fetch


def test_checksum_mismatch(tmp_path, monkeypatch):
    patch_urlopen(monkeypatch, fake_zip())
    with pytest.raises(DownloadError, match="checksum mismatch.*expected SHA-256 50d2a982"):
        download_movielens_100k(tmp_path)
    assert not (tmp_path / "movielens-100k" / "u.data").exists()


def test_content_check_after_checksum(tmp_path, monkeypatch):
    payload = fake_zip(u_data_rows=99_999)
    patch_urlopen(monkeypatch, payload)
    with pytest.raises(DownloadError, match="u.data has 99999 rows, expected 100000"):
        download_movielens_100k(tmp_path, sha256=hashlib.sha256(payload).hexdigest())
    assert not (tmp_path / "movielens-100k" / "u.data").exists()


@pytest.mark.parametrize("error", [URLError(socket.gaierror(-3, "Temporary failure in name resolution")),
                                   TimeoutError("timed out")])
def test_offline(tmp_path, monkeypatch, error):
    patch_urlopen(monkeypatch, error=error)
    with pytest.raises(DownloadError) as e:
        download_movielens_100k(tmp_path)
    msg = str(e.value)
    assert msg.startswith("could not reach files.grouplens.org: ")
    assert "you appear to be offline" in msg and str(tmp_path / "movielens-100k") in msg
    assert "LMREC_DATA_DIR" in msg


def test_http_error(tmp_path, monkeypatch):
    patch_urlopen(monkeypatch, error=HTTPError(dl.ML100K_URL, 404, "Not Found", None, None))
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_movielens_100k(tmp_path)


def test_download_by_name(tmp_path, monkeypatch):
    with pytest.raises(DownloadError, match="no automatic download for 'ml-1m'"):
        download("ml-1m", tmp_path)
    payload = fake_zip()
    patch_urlopen(monkeypatch, payload)
    out = download("ml-100k", tmp_path, sha256=hashlib.sha256(payload).hexdigest())
    assert (out / "u.item").is_file()
