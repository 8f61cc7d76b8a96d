"""The wheel installs one namespace: nothing generic (env, policies, trainers) at the top level."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_wheel_has_only_the_ttc_runtime_namespace(tmp_path):
    # Build from a copy without earlier build outputs, which setuptools would reuse.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "runs", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, source],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"ttc_runtime"}
    # Every source module of the mapped folders is in the wheel (a subpackage missing from
    # pyproject's package list would be dropped silently).
    mapping = {
        "ttc_runtime": "ttc_runtime",
        "env": "ttc_runtime/env",
        "policies": "ttc_runtime/policies",
        "trainers": "ttc_runtime/trainers",
    }
    for folder, installed in mapping.items():
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" not in source.parts:
                assert f"{installed}/{source.relative_to(ROOT / folder).as_posix()}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ttc = ttc_runtime.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_folders_map_into_the_namespace():
    import ttc_runtime.env
    import ttc_runtime.policies
    import ttc_runtime.trainers

    assert Path(ttc_runtime.env.__file__).parent.name == "env"
    assert Path(ttc_runtime.trainers.__file__).parent.name == "trainers"
    assert Path(ttc_runtime.policies.__file__).parent.name == "policies"
