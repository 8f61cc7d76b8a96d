"""The wheel installs one namespace: nothing generic (env, policies, trainers) at the top level."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_wheel_has_only_the_ttc_runtime_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, ROOT],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"ttc_runtime"}
    for module in (
        "ttc_runtime/env/__init__.py",
        "ttc_runtime/policies/__init__.py",
        "ttc_runtime/trainers/proposer.py",
    ):
        assert module in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ttc = ttc_runtime.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_folders_map_into_the_namespace():
    import ttc_runtime.env
    import ttc_runtime.policies
    import ttc_runtime.trainers

    assert Path(ttc_runtime.env.__file__).parent.name == "env"
    assert Path(ttc_runtime.trainers.__file__).parent.name == "trainers"
    assert Path(ttc_runtime.policies.__file__).parent.name == "policies"
