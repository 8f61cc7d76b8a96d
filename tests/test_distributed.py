"""Multi-process training on CPU: a tiny PRM and a tiny revision model under DeepSpeed ZeRO-2 with
two processes."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ttc_runtime.models import load_causal_lm
from ttc_runtime.scoring import TokenClassificationPRM

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_prm_and_revision_model_train_under_zero2_with_two_processes(tiny_model_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(ROOT / "tests" / "distributed_train_worker.py"),
            str(tiny_model_dir),
            str(tmp_path / "prm"),
            str(tmp_path / "revision"),
            str(ROOT / "configs" / "deepspeed" / "zero2.json"),
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"report.{rank}").read_text()) for rank in (0, 1)]
    assert all(r["world_size"] == 2 and r["steps"] == 6 and math.isfinite(r["loss"]) for r in reports)
    assert reports[0]["loss"] == reports[1]["loss"]  # one model, trained together
    assert all(r["revision_steps"] == 4 and math.isfinite(r["revision_loss"]) for r in reports)
    assert reports[0]["revision_loss"] == reports[1]["revision_loss"]
    assert not (tmp_path / "prm.partial").exists() and not (tmp_path / "revision.partial").exists()
    load_causal_lm(tmp_path / "revision")
    prm = TokenClassificationPRM.from_pretrained(tmp_path / "prm")
    assert len(prm.score(["1+1"], [["2", "\\boxed{2}"]]).step_scores[0]) == 2
