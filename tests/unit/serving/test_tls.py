"""TLS on `lmrec serve` (issue 14, item 3): --ssl-certfile / --ssl-keyfile serve HTTPS (a
self-signed certificate made here, trusted by the client), and a missing or broken certificate
is a one-line CLI error."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lmrec.cli.main import app


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def free_port() -> int:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    except OSError as e:  # pragma: no cover - a sandbox without loopback sockets
        pytest.skip(f"cannot bind a local port: {e}")


def test_serve_over_https(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {**os.environ, "LMREC_ENGINE__BLAS_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmrec.cli.main", "serve", "--home", str(tmp_path / "home"),
                             "--port", str(port), "--no-auth", "--encoder", "fake", "--index", "flat",
                             "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline, last = time.time() + 120, None
        while time.time() < deadline:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                if "cannot listen" in out:
                    pytest.skip(f"cannot bind: {out.strip()[-300:]}")
                pytest.fail(f"the server exited ({proc.returncode}): {out[-2000:]}")
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/health", verify=trust, timeout=5)
                break
            except httpx.TransportError as e:
                last = e
                time.sleep(0.5)
        else:
            pytest.fail(f"no HTTPS answer within 120 s: {last!r}")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert r.url.scheme == "https"
        with pytest.raises(httpx.TransportError):   # the certificate is checked: an untrusting client refuses it
            httpx.get(f"https://127.0.0.1:{port}/health", timeout=5)
        with pytest.raises(httpx.TransportError):   # plain HTTP is not served on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()


def test_missing_or_broken_certificate_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "home"
    r = runner.invoke(app, ["serve", "--home", str(home), "--port", "0", "--encoder", "fake",
                            "--ssl-certfile", str(tmp_path / "nope.pem")])
    assert r.exit_code == 1 and "nope.pem: no such file" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    r = runner.invoke(app, ["serve", "--home", str(home), "--port", "0", "--encoder", "fake",
                            "--ssl-certfile", str(bad)])
    assert r.exit_code == 1 and "cannot load the certificate" in r.output, r.output
    cert, _ = self_signed(tmp_path)
    r = runner.invoke(app, ["serve", "--home", str(home), "--port", "0", "--encoder", "fake",
                            "--ssl-keyfile", str(cert)])
    assert r.exit_code == 1 and "ssl_certfile" in r.output, r.output
