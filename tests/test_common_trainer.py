"""Checkpointed training: a run that dies is resumed from its last checkpoint, and ends as an
uninterrupted run does."""

from __future__ import annotations

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
