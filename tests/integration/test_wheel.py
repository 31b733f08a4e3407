"""The wheel is complete (issue 16, item 7): built from this checkout and installed into a fresh
virtual environment, `lmrec` runs outside the checkout with the configs, the demo catalog and
the docs assets it ships — no file of the source tree is read.

Offline: the wheel is built with the installed setuptools (no build isolation), the new venv
has no pip and reaches the dependencies through a .pth file naming this environment's
site-packages (not processed as a site dir, so the checkout's editable lmrec stays invisible),
and the wheel is installed with --no-deps --no-index."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """(the venv's bin folder, an environment to run it with, the wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "checkout"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore, symlinks=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp / "dist"), str(src)], tmp, env)
    (wheel,) = (tmp / "dist").glob("lmrec-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp,
                        env).stdout.strip())
    deps = [p for p in [*site.getsitepackages(), sysconfig.get_path("purelib")] if Path(p).is_dir()]
    (purelib / "_lmrec_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
         tmp, env)
    run_env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run_env.update(LMREC_CACHE_DIR=str(tmp / "cache"), COLUMNS="200", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return venv / "bin", run_env, wheel


def test_wheel_holds_configs_demo_catalog_and_license(installed: tuple[Path, dict, Path]) -> None:
    names = set(zipfile.ZipFile(installed[2]).namelist())
    shipped = {p.name for p in (ROOT / "src" / "lmrec" / "configs").glob("*.toml")}
    assert shipped and {f"lmrec/configs/{n}" for n in shipped} <= names
    assert "lmrec/serving/data/demo_catalog.jsonl" in names and "lmrec/py.typed" in names
    assert {f"lmrec/serving/console/{n}" for n in ("index.html", "console.js", "console.css")} <= names
    license_file = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    text = zipfile.ZipFile(installed[2]).read(license_file).decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    metadata = zipfile.ZipFile(installed[2]).read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert b"License-Expression: Apache-2.0" in metadata and b"fastapi-offline" in metadata


def test_installed_lmrec_is_the_wheel(installed: tuple[Path, dict, Path], tmp_path: Path) -> None:
    bin_dir, env, _ = installed
    out = _run([str(bin_dir / "python"), "-c", "import lmrec, lmrec.pipeline.spec as s; print(lmrec.__file__); "
                "print(s.CONFIG_DIR)"], tmp_path, env).stdout.split()
    assert all(Path(p).is_relative_to(bin_dir.parent) for p in out), out   # not the checkout's editable copy
    assert "Usage: lmrec pipeline" in _run([str(bin_dir / "lmrec"), "pipeline", "--help"], tmp_path, env).stdout


def test_pipeline_from_a_shipped_config(installed: tuple[Path, dict, Path], tmp_path: Path) -> None:
    from lmrec.data.loaders import dataset_folder
    from lmrec.settings import data_dir

    if not dataset_folder("ml-100k").is_dir():
        pytest.skip(f"ml-100k not found in {data_dir()}; set LMREC_DATA_DIR")
    bin_dir, env, _ = installed
    # the working directory has no configs/ folder: "serve-default" is the config inside the wheel
    out = _run([str(bin_dir / "lmrec"), "pipeline", "--dataset", "ml-100k", "--data-dir", str(data_dir()),
                "--config", "serve-default", "--set", '{"encoder": "fake"}', "--k", "3"], tmp_path, env).stdout
    assert "pipeline stages" in out and "transitions" in out and "recommendations for user" in out


def test_demo_smoke_from_the_wheel(installed: tuple[Path, dict, Path], tmp_path: Path) -> None:
    bin_dir, env, _ = installed
    out = _run([str(bin_dir / "lmrec"), "demo", "--smoke", "--encoder", "fake", "--home", str(tmp_path / "demo")],
               tmp_path, env).stdout
    assert "smoke test passed" in out and "-> 200" in out
