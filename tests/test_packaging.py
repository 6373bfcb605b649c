"""resviz as a package: the wheel carries the library, its dependencies and the `resviz` command."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import resviz

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_DEPS = {"torch", "torchvision", "numpy", "pillow", "captum", "plotly", "scikit-image"}


def _source_tree(dest: Path) -> Path:
    """What a build needs, copied, so that no build/ or *.egg-info is left in the checkout."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "resviz", dest / "resviz", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = _source_tree(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    # No build isolation: the venv's setuptools builds it, so nothing is fetched.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src],
        check=True,
        capture_output=True,
        text=True,
    )
    (whl,) = out.glob("resviz-*.whl")
    return whl


def _metadata(whl: Path) -> email.message.Message:
    with zipfile.ZipFile(whl) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_string(z.read(name).decode())


def test_wheel_lists_the_library_dependencies_and_the_app_extra(wheel) -> None:
    meta = _metadata(wheel)
    assert meta["Name"] == "resviz" and meta["Version"] == resviz.__version__
    requires = meta.get_all("Requires-Dist")
    plain = {r.split(">")[0].split("=")[0].split(";")[0].strip() for r in requires if "extra ==" not in r}
    assert plain >= LIBRARY_DEPS and "streamlit" not in plain  # the library never imports streamlit
    assert any(r.startswith("streamlit") and 'extra == "app"' in r for r in requires)
    assert "app" in meta.get_all("Provides-Extra")


def test_wheel_has_the_console_script_and_only_the_library(wheel) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[console_scripts]" in entry and "resviz = resviz.cli:main" in entry
    assert {"resviz/__init__.py", "resviz/cli.py", "resviz/training/__init__.py"} <= set(names)
    # The demo group travels with the library: weights, snapshots, seeds and precomputed results.
    bundled = {n for n in names if n.startswith("resviz/bundled/")}
    assert "resviz/bundled/runs/demo-shapes-resnet56/model.safetensors" in bundled
    assert (
        "resviz/bundled/demo/seeds.json" in bundled and "resviz/bundled/demo/results/lesion.json" in bundled
    )
    assert any("/snapshots/step-" in n for n in bundled)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"resviz", f"resviz-{resviz.__version__}.dist-info"}  # no ui/, pages/, tests/


def test_the_entry_point_is_the_cli(capsys) -> None:
    from resviz.cli import main

    assert main(["models", "--json"]) == 0
    assert "resnet18" in capsys.readouterr().out


@pytest.mark.slow
def test_pip_install_gives_a_working_resviz_command(tmp_path) -> None:
    """`pip install .` into a fresh venv, then `resviz models`.

    The fresh venv sees this interpreter's packages through a .pth file instead of downloading
    torch again (about 5 GB); resviz itself is installed from the source tree, without its
    dependencies, and must then import and run from the venv, not from the checkout.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "host.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The venv's own setuptools (from ensurepip) may be too old to build a wheel: use the host's.
    subprocess.run([py, "-m", "pip", "uninstall", "-y", "-q", "setuptools"], check=True)
    (tmp_path / "src").mkdir()
    src = _source_tree(tmp_path / "src")
    subprocess.run([py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", src], check=True)
    out = subprocess.run(
        [venv / "bin" / "resviz", "models"], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    assert "resnet18" in out and "plain56" in out
    where = subprocess.run(
        [py, "-c", "import resviz; print(resviz.__file__)"], cwd=tmp_path, capture_output=True, text=True
    ).stdout
    assert str(venv) in where
