"""What `pip install .` ships: a wheel built from this tree holds the configs and the default detector,
and a config name resolves from any folder once installed (not only in an editable checkout)."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # --no-build-isolation: setuptools is already here (no network); a copy of the tree keeps
    # build/ and *.egg-info out of the checkout
    subprocess.run(["cp", "-r", str(ROOT / "facedet"), str(ROOT / "pyproject.toml"), str(ROOT / "README.md"),
                    str(ROOT / "LICENSE"), str(build)], check=True)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(build), "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return next(out.glob("facedet-*.whl"))


def test_wheel_ships_every_config_and_the_default_detector(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (ROOT / "facedet" / "configs").glob("*.yaml"))
    assert shipped and all(f"facedet/configs/{name}" in names for name in shipped)
    assert "facedet/weights/face_default.pt" in names
    assert all(f"facedet/weights/{p.name}" in names for p in (ROOT / "facedet" / "weights").glob("*.pt"))
    assert all(f"facedet/photos/{p.name}" in names for p in (ROOT / "facedet" / "photos").glob("*.jpg"))


def test_config_name_resolves_from_an_unpacked_wheel_in_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import facedet.config as c; p = c.resolve_config_path('quickstart.yaml'); "
            "print(p); cfg = c.load_config('quickstart.yaml'); print(cfg.model.name)")
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    path, name = result.stdout.split()
    assert Path(path).is_relative_to(site) and name


def test_a_folder_named_facedet_in_the_current_directory_does_not_shadow_the_package(tmp_path):
    """Run from the folder that holds a clone named `facedet`, `import facedet` must still find the
    installed package, not the clone as an empty namespace package (pyproject's package-dir makes
    `pip install -e .` a plain path entry; an import hook would lose to the namespace package)."""
    (tmp_path / "facedet" / "notebooks").mkdir(parents=True)  # a clone's root: no __init__.py
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", "import facedet; print(facedet.load.__module__)"], cwd=tmp_path,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "facedet.checkpoint"
