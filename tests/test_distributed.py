"""Multi-process training on CPU: a tiny PRM and a tiny revision model with two processes, under
DeepSpeed ZeRO-2 started by torchrun and ZeRO-3 started by accelerate launch."""

import json
import math
import os
import shutil
import signal
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


BUILD_OPS = """
from deepspeed.accelerator import get_accelerator
for name in ("ShareMemCommBuilder", "FusedAdamBuilder"):
    get_accelerator().create_op_builder(name).load()
"""


@pytest.fixture(scope="module")
def launch_env(tmp_path_factory) -> dict[str, str]:
    """The environment of the launched processes: DeepSpeed's CPU accelerator, one thread each,
    and DeepSpeed's CPU ops (shared-memory collectives, fused Adam) built once, here, into a
    directory of this test run. PyTorch builds such an op on first use behind a lock file in its
    build directory; a process killed while building leaves the lock behind and every later
    process waits on it for ever, so the launched processes get a directory no earlier process
    touched, with the ops already built (which also keeps two ranks from building at once)."""
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "TORCH_EXTENSIONS_DIR": str(tmp_path_factory.mktemp("torch-extensions")),
    }
    build = subprocess.run([sys.executable, "-c", BUILD_OPS], capture_output=True, text=True, timeout=900, env=env)
    assert build.returncode == 0, build.stderr[-3000:]
    return env


def run_launched(command: list[str], env: dict[str, str], log: Path, timeout: int = 600) -> str:
    """Run a launcher and its processes in a session of their own, output to ``log``; on a time-out
    kill the whole session (a launcher killed alone leaves its workers running, holding the port
    and the cores) and fail with the end of the output, which shows where they stopped."""
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"{command[0]} ran past {timeout} s; its output ended with:\n{log.read_text()[-3000:]}")
    output = log.read_text()
    assert returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
@pytest.mark.parametrize(("launch", "zero"), [("torchrun", "zero2"), ("accelerate", "zero3")])
def test_prm_and_revision_model_train_with_two_processes(tiny_model_dir, tmp_path, launch, zero, launch_env):
    run_launched(
        [
            *launcher(launch),
            str(ROOT / "tests" / "distributed_train_worker.py"),
            str(tiny_model_dir),
            str(tmp_path / "prm"),
            str(tmp_path / "revision"),
            str(ROOT / "configs" / "deepspeed" / f"{zero}.json"),
            str(tmp_path / "report"),
        ],
        launch_env,
        tmp_path / "launch.log",
    )
    reports = [json.loads((tmp_path / f"report.{rank}").read_text()) for rank in (0, 1)]
    assert all(r["world_size"] == 2 and r["steps"] == 6 and math.isfinite(r["loss"]) for r in reports)
    assert reports[0]["loss"] == reports[1]["loss"]  # one model, trained together
    assert all(r["revision_steps"] == 4 and math.isfinite(r["revision_loss"]) for r in reports)
    assert reports[0]["revision_loss"] == reports[1]["revision_loss"]
    assert not (tmp_path / "prm.partial").exists() and not (tmp_path / "revision.partial").exists()
    load_causal_lm(tmp_path / "revision")
    prm = TokenClassificationPRM.from_pretrained(tmp_path / "prm")
    assert len(prm.score(["1+1"], [["2", "\\boxed{2}"]]).step_scores[0]) == 2


PIPELINE = """
run_dir: {run_dir}
task:
  name: synthetic
  synthetic: {{train_per_level: 40, validation_per_level: 5, test_per_level: 10}}
proposer:
  architecture: {{hidden_size: 32, num_layers: 2, num_heads: 2, intermediate_size: 64, max_positions: 256}}
  training: {{max_steps: 6, batch_size: 8, logging_steps: 2, deepspeed: {zero3}}}
sampling:
  max_new_tokens: 48
proposer_eval: {{problems_per_level: 2, samples_per_problem: 1}}
prm_labels: {{problems_per_level: 2, samples_per_problem: 2, rollouts: 2, shard_size: 4}}
prm:
  training: {{max_steps: 4, batch_size: 8, logging_steps: 2, deepspeed: {zero2}}}
"""


def ttc(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "ttc_runtime.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_pipeline_training_stages_run_under_launchers(tmp_path, launch_env):
    """``ttc train`` runs a pipeline stage's training with two processes (the proposer under
    accelerate launch and ZeRO-3, the PRM under torchrun and ZeRO-2); ``ttc run`` then finds both
    stages up to date, and the stage records and wandb runs were written once."""
    run_dir = tmp_path / "run"
    config = tmp_path / "pipeline.yaml"
    deepspeed = ROOT / "configs" / "deepspeed"
    config.write_text(PIPELINE.format(run_dir=run_dir, zero3=deepspeed / "zero3.json", zero2=deepspeed / "zero2.json"))
    env = {**launch_env, "WANDB_MODE": "offline"}

    early = ttc("train", "prm", config, env=env)
    assert early.returncode == 2 and "run `ttc run CONFIG --to proposer` first" in early.stderr

    def launched(launch: str, stage: str):
        command = [*launcher(launch), "-m", "ttc_runtime.cli", "train", stage, str(config)]
        if launch == "accelerate":  # accelerate launch runs a module with --module
            command = [*launcher(launch), "--module", "ttc_runtime.cli", "train", stage, str(config)]
        return run_launched(command, env, tmp_path / f"{stage}.log")

    launched("accelerate", "proposer")
    proposer = json.loads((run_dir / "proposer" / "ttc_stage.json").read_text())
    assert proposer["trained"] and proposer["steps"] == 6

    missing = ttc("train", "prm", config, env=env)
    assert missing.returncode == 2 and "run `ttc run CONFIG --to prm_labels` first" in missing.stderr

    labels = ttc("run", config, "--to", "prm_labels", env=env)
    assert labels.returncode == 0, labels.stderr[-3000:]
    assert f"up to date ({run_dir / 'proposer'}" in labels.stdout

    launched("torchrun", "prm")
    prm = json.loads((run_dir / "prm" / "ttc_stage.json").read_text())
    assert prm["trained"] and prm["steps"] == 4 and math.isfinite(prm["final_loss"])
    assert not (run_dir / "prm.partial").exists()
    scorer = TokenClassificationPRM.from_pretrained(run_dir / "prm")
    assert len(scorer.score(["1+1"], [["2", "\\boxed{2}"]]).step_scores[0]) == 2

    again = ttc("run", config, "--to", "prm", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"up to date ({run_dir / 'prm'}" in again.stdout
    assert json.loads((run_dir / "prm" / "ttc_stage.json").read_text()) == prm
    # One wandb run per trained stage (written by the first process only), one for the labels.
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 3
