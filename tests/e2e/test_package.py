"""The wheel the Dockerfile installs (`pip install .`, not editable) carries the files the
code loads at run time: the apply script and the demo's sample."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_holds_the_lua_script_and_the_sample(tmp_path):
    # Build from a copy: setuptools writes a build/ tree next to the sources.
    source = tmp_path / "src"
    shutil.copytree(
        REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("insiders-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "consumer/lua/apply.lua",
        "consumer/data/online_retail_sample.csv.gz",
        "consumer/data/README.md",  # the sample's attribution (CC BY 4.0)
        "segmenter/report.py",
        "api/dashboard.py",
    ):
        assert needed in names, needed
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "insiders = consumer.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
