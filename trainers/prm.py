"""PRM training: a token-classification model scored at the end of every step.

TRL removed its PRM trainer in 1.14, so this is a small subclass of transformers' ``Trainer`` whose
loss is binary cross-entropy at the step positions (``scoring.encode_steps``), on soft Monte Carlo
labels by default or on hard labels. Any dataset in TRL's stepwise-supervision layout (``prompt``,
``completions``, ``labels``) trains through it; ``soft_labels`` is used when present and asked for.
DeepSpeed comes through ``TrainSettings.deepspeed`` (a JSON config path), as for the SFT trainers.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from datasets import Dataset
from pydantic import Field
from transformers import (
    AutoModelForTokenClassification,
    LlamaForTokenClassification,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from ..config import StrictModel
from ..models import TinyLMConfig, load_tokenizer, tiny_llama_config
from ..scoring.prm import encode_steps
from .common import TrainResult, TrainSettings, staging_dir, train_and_save, trainer_arguments

IGNORE = -100.0
"""Target value of positions that carry no label."""


class PRMConfig(StrictModel):
    """How the PRM is initialised, which labels it learns and how it is trained."""

    init: Literal["proposer", "scratch"] = Field(
        "proposer", description="Start from the proposer's weights (as the paper does) or from scratch."
    )
    targets: Literal["soft", "hard"] = Field("soft", description="Soft MC fractions or hard any-correct labels.")
    architecture: TinyLMConfig = Field(TinyLMConfig(), description="Shape when init is scratch.")
    training: TrainSettings = TrainSettings(max_steps=400, learning_rate=1e-3)


def step_targets(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completions: Sequence[str], labels: Sequence[float | bool]
) -> dict[str, list]:
    """Token ids and per-token targets (a label at each step's last token, ``IGNORE`` elsewhere)."""
    if len(completions) != len(labels):
        raise ValueError(f"{len(completions)} completions but {len(labels)} labels")
    targets = [float(label) for label in labels]
    bad = [t for t in targets if not 0.0 <= t <= 1.0]
    if bad:
        raise ValueError(f"labels must lie in [0, 1], got {bad[0]}")
    ids, positions = encode_steps(tokenizer, prompt, completions)
    per_token = [IGNORE] * len(ids)
    for position, target in zip(positions, targets):
        per_token[position] = target
    return {"input_ids": ids, "labels": per_token}


def prm_features(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, targets: str = "soft") -> list[dict]:
    """Training features of a stepwise dataset; row numbers name the bad row in errors."""
    column = "soft_labels" if targets == "soft" and "soft_labels" in dataset.column_names else "labels"
    features = []
    for number, row in enumerate(dataset):
        try:
            features.append(step_targets(tokenizer, row["prompt"], row["completions"], row[column]))
        except ValueError as error:
            raise ValueError(f"stepwise dataset row {number}: {error}") from None
    return features


class _Collator:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            input_ids[row, :n] = torch.tensor(item["input_ids"])
            attention[row, :n] = 1
            labels[row, :n] = torch.tensor(item["labels"])
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class PRMTrainer(Trainer):
    """``Trainer`` with binary cross-entropy at the labelled step positions."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits[..., 0]  # (B, T)
        mask = labels != IGNORE
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask].float(), labels[mask].float())
        return (loss, outputs) if return_outputs else loss


def _build_model(config: PRMConfig, proposer_dir: Path, tokenizer: PreTrainedTokenizerBase):
    if config.init == "proposer":
        return AutoModelForTokenClassification.from_pretrained(str(proposer_dir), num_labels=1)
    llama = tiny_llama_config(config.architecture, tokenizer)
    llama.num_labels = 1
    torch.manual_seed(config.training.seed)
    return LlamaForTokenClassification(llama)


def train_prm(config: PRMConfig, dataset: Dataset, proposer_dir: str | Path, output_dir: str | Path) -> TrainResult:
    """Train a PRM on a stepwise dataset; the proposer's tokenizer is reused, and its weights when
    ``init`` is 'proposer'. The model is saved through a staging directory renamed into place."""
    proposer_dir, output_dir = Path(proposer_dir), Path(output_dir)
    tokenizer = load_tokenizer(proposer_dir)
    features = prm_features(dataset, tokenizer, config.targets)
    model = _build_model(config, proposer_dir, tokenizer)
    shutil.rmtree(staging_dir(output_dir), ignore_errors=True)
    args = TrainingArguments(**trainer_arguments(config.training, output_dir), remove_unused_columns=False)
    trainer = PRMTrainer(
        model=model, args=args, train_dataset=features, data_collator=_Collator(tokenizer.pad_token_id)
    )
    return train_and_save(trainer, tokenizer, output_dir)
