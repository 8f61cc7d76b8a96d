"""Checkpointed training: a run that dies is resumed from its last checkpoint, and ends as an
uninterrupted run does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForCausalLM, Trainer
from ttc_runtime.trainers.common import TrainSettings, staging_dir
from ttc_runtime.trainers.proposer import ProposerConfig, train_proposer

from ttc_runtime.models import TinyLMConfig
from ttc_runtime.tasks import SyntheticTask

TINY = TinyLMConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=256)


def config(save_steps: int | None) -> ProposerConfig:
    training = TrainSettings(max_steps=6, batch_size=4, logging_steps=1, save_steps=save_steps)
    return ProposerConfig(architecture=TINY, training=training)


def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    problems = SyntheticTask().problems("train")[:40]
    whole = train_proposer(config(None), problems, tmp_path / "whole")

    original = Trainer.training_step
    steps = []

    def dies_at_step_5(self, *args, **kwargs):
        steps.append(self.state.global_step)
        if len(steps) == 5 and self.state.global_step == 4:
            raise RuntimeError("killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", dies_at_step_5)
    with pytest.raises(RuntimeError, match="killed"):
        train_proposer(config(2), problems, tmp_path / "resumed")
    staged = staging_dir(tmp_path / "resumed") / "trainer"
    assert sorted(p.name for p in staged.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "resumed").exists()

    steps.clear()
    resumed = train_proposer(config(2), problems, tmp_path / "resumed")
    assert steps == [4, 5]  # only the steps after the last checkpoint ran again
    assert resumed.steps == whole.steps == 6
    assert not staging_dir(tmp_path / "resumed").exists()
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "whole").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "resumed").state_dict()
    assert all(torch.allclose(a[k], b[k]) for k in a)

    # other settings: the old checkpoints are not resumed from
    monkeypatch.setattr(Trainer, "training_step", dies_at_step_5)
    steps.clear()
    with pytest.raises(RuntimeError, match="killed"):
        train_proposer(config(2), problems, tmp_path / "other")
    steps.clear()

    def counts(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counts)
    changed = config(2).model_copy(update={"training": config(2).training.model_copy(update={"max_steps": 7})})
    train_proposer(changed, problems, tmp_path / "other")
    assert steps[0] == 0 and len(steps) == 7


# Run in a fresh interpreter: DeepSpeed logs its accelerator warning once, when a process first
# imports it (inside the Trainer), and the test process has imported it long before.
TRAIN = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import datasets
    from datasets import Dataset
    from transformers.utils import logging as transformers_logging
    from ttc_runtime.trainers.common import TrainSettings
    from ttc_runtime.trainers.prm import PRMConfig, train_prm
    from ttc_runtime.trainers.proposer import ProposerConfig, train_proposer

    from ttc_runtime.tasks import SyntheticTask, SyntheticTaskConfig, split_steps

    out = Path(sys.argv[1])
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=4, validation_per_level=1, test_per_level=1))
    problems = task.problems("train")
    training = TrainSettings(max_steps=2, batch_size=4, logging_steps=1)
    tiny = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
    train_proposer(ProposerConfig(architecture=tiny, training=training), problems, out / "proposer")
    steps = [split_steps(p.solution) for p in problems]
    rows = Dataset.from_dict(
        {"prompt": [p.question for p in problems], "completions": steps, "labels": [[True] * len(s) for s in steps]}
    )
    train_prm(PRMConfig(training=training), rows, out / "proposer", out / "prm")
    restored = not datasets.are_progress_bars_disabled() and transformers_logging.is_progress_bar_enabled()
    print("bars restored:", restored)
    """
)

NOISE = (
    "`gradient_checkpointing` is deprecated",  # transformers, on TRL's SFTConfig default
    "train dataset:",  # datasets' map/filter bars inside SFTTrainer ("Tokenizing train dataset: ...")
    "Setting accelerator to CPU",  # DeepSpeed, when first imported on a machine without CUDA
    "Loading weights",  # transformers' bar loading the proposer under the PRM
    "Writing model shards",  # transformers' bar saving a model
)


def test_training_prints_its_progress_but_no_library_noise(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TQDM_")
        and key not in ("DS_ACCELERATOR", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
    }
    # No CUDA, so that DeepSpeed's accelerator detection fails as on a CPU machine; warnings shown.
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="default", TRANSFORMERS_VERBOSITY="warning")
    result = subprocess.run(
        [sys.executable, "-c", TRAIN, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    assert [noise for noise in NOISE if noise in console] == [], console[-3000:]
    # The Trainer's bar over the steps and its loss lines are the progress of the long work: kept.
    assert console.count("2/2 [") >= 2 and console.count("'loss'") == 4
    assert "bars restored: True" in result.stdout  # the libraries' bars are back on afterwards
