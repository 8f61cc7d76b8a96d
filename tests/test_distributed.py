"""Multi-process training on CPU: a tiny PRM and a tiny revision model with two processes, under
DeepSpeed ZeRO-2 started by torchrun and ZeRO-3 started by accelerate launch."""

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


def launcher(name: str) -> list[str]:
    """Two processes on this machine, started by ``torchrun`` or by ``accelerate launch`` with the
    repository's accelerate config."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or name
    if name == "torchrun":
        return [found, "--nproc_per_node", "2", "--master_port", "29533"]
    config = ROOT / "configs" / "accelerate" / "multi_process.yaml"
    return [found, "launch", "--config_file", str(config), "--num_processes", "2", "--main_process_port", "29535"]


@pytest.mark.slow
@pytest.mark.parametrize(("launch", "zero"), [("torchrun", "zero2"), ("accelerate", "zero3")])
def test_prm_and_revision_model_train_with_two_processes(tiny_model_dir, tmp_path, launch, zero):
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            *launcher(launch),
            str(ROOT / "tests" / "distributed_train_worker.py"),
            str(tiny_model_dir),
            str(tmp_path / "prm"),
            str(tmp_path / "revision"),
            str(ROOT / "configs" / "deepspeed" / f"{zero}.json"),
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
