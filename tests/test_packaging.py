"""The built wheel installs one import name, `landsentry`, with the bundled weights and the page inside it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from tests.conftest import ROOT

SOURCES = ("pyproject.toml", "README.md", "landsentry", "models", "training", "api")


def test_wheel_installs_only_the_landsentry_namespace(tmp_path):
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if (ROOT / name).is_dir() else {}))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("landsentry-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"landsentry"}, f"top-level names other than landsentry: {sorted(top - dist_info)}"
    (info,) = dist_info
    if f"{info}/top_level.txt" in names:
        assert zipfile.ZipFile(wheel).read(f"{info}/top_level.txt").decode().split() == ["landsentry"]
    for needed in ("landsentry/models/weights/landsentry-lite0.pt", "landsentry/models/weights/landsentry-change.pt",
                   "landsentry/api/static/index.html", "landsentry/models/vocabulary/kinds.py", "landsentry/cli.py"):
        assert needed in names, needed
    entry = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "landsentry = landsentry.cli:main" in entry
