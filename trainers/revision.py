"""Revision-model SFT with TRL's ``SFTTrainer``: question and earlier attempts in, a correct
solution out, loss on the revised solution only (prompt-completion data).

The revision model starts from the proposer's weights (the paper fine-tunes its base model) and
is saved like the proposer, through a staging directory renamed into place. DeepSpeed comes
through ``training.deepspeed`` as for the other trainers. Batches group examples of similar length
(transformers' ``LengthGroupedSampler``): prompts hold 0 to 4 attempts, so random batches would be
mostly padding.

**Context length.** An example whose prompt and target together exceed ``training.max_length``
tokens loses its oldest attempts, one at a time, until it fits (``fit_to_length``); one that does
not fit even without attempts is left out. Both counts are reported, so nothing is cut silently
and no prompt is truncated in the middle of an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from pydantic import Field
from transformers import PreTrainedTokenizerBase

from ttc_runtime.config import StrictModel
from ttc_runtime.models import load_causal_lm, load_tokenizer
from ttc_runtime.prompts import PromptConfig, RevisionPromptConfig

from .common import TrainResult, TrainSettings, prepare_staging, quiet_libraries, train_and_save, trainer_arguments


class RevisionConfig(StrictModel):
    """How the revision model is prompted and trained."""

    model: str | None = Field(None, description="A trained revision model to use as is: no data, no training.")
    prompt: RevisionPromptConfig = RevisionPromptConfig()
    training: TrainSettings = Field(
        TrainSettings(max_steps=300, learning_rate=1e-3, max_length=512),
        description="max_length bounds prompt + target in tokens (see fit_to_length).",
    )


@dataclass(frozen=True)
class Fitted:
    """Examples that fit the context, and what fitting cost."""

    dataset: Dataset
    attempts_dropped: int
    examples_dropped: int


def fit_to_length(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    prompt: PromptConfig,
    revision: RevisionPromptConfig,
    max_length: int,
) -> Fitted:
    """Drop each example's oldest attempts until prompt + target fit in ``max_length`` tokens;
    leave out examples that do not fit with no attempt at all."""
    rows, attempts_dropped, examples_dropped = [], 0, 0
    for row in dataset:
        attempts = list(row["attempt_texts"])
        target = len(tokenizer(row["completion"], add_special_tokens=False)["input_ids"])
        while True:
            text = revision.format(prompt, row["question"], attempts)
            if len(tokenizer(text)["input_ids"]) + target <= max_length:
                rows.append({"prompt": text, "completion": row["completion"]})
                break
            if not attempts:
                examples_dropped += 1
                break
            attempts = attempts[1:]
            attempts_dropped += 1
    columns = {key: [row[key] for row in rows] for key in ("prompt", "completion")}
    return Fitted(Dataset.from_dict(columns), attempts_dropped, examples_dropped)


def train_revision(
    config: RevisionConfig,
    dataset: Dataset,
    proposer_dir: str | Path,
    output_dir: str | Path,
    prompt: PromptConfig = PromptConfig(),
) -> tuple[TrainResult, Fitted]:
    """Fine-tune the proposer at ``proposer_dir`` (whose prompt format is ``prompt``) into a
    revision model saved at ``output_dir``."""
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    settings = config.training
    tokenizer = load_tokenizer(proposer_dir)
    fitted = fit_to_length(dataset, tokenizer, prompt, config.prompt, settings.max_length)
    if len(fitted.dataset) == 0:
        raise ValueError(f"no revision example fits in max_length {settings.max_length} tokens")
    with quiet_libraries():
        model = load_causal_lm(proposer_dir, dtype="auto").train()
        prepare_staging(output_dir, settings, len(fitted.dataset))
        args = SFTConfig(
            **trainer_arguments(settings, output_dir),
            max_length=settings.max_length,
            train_sampling_strategy="group_by_length",
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=fitted.dataset, processing_class=tokenizer)
        return train_and_save(trainer, tokenizer, output_dir), fitted
