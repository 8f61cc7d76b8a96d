"""Proposer SFT with TRL's ``SFTTrainer``.

The embedded default trains a tiny causal LM from scratch on worked solutions of
the synthetic task; ``base_model`` points the same code at any Hugging Face causal LM to fine-tune
instead. Loss is on the solution only (prompt-completion data). The result is written with
``save_pretrained`` into a temporary directory and renamed into place, so an interrupted run
never leaves a half-written model behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from pydantic import Field, model_validator

from ttc_runtime.config import StrictModel
from ttc_runtime.models import (
    TinyLMConfig,
    build_embedded_tokenizer,
    build_tiny_causal_lm,
    load_causal_lm,
    load_tokenizer,
)
from ttc_runtime.prompts import PromptConfig
from ttc_runtime.tasks import Problem

from .common import TrainResult, TrainSettings, prepare_staging, quiet_libraries, train_and_save, trainer_arguments


class ProposerConfig(StrictModel):
    """Where the proposer comes from and how it is prompted and trained."""

    model: str | None = Field(
        None, description="Directory of a ready proposer (any Hugging Face causal LM) to use as is; no training."
    )
    base_model: str | None = Field(
        None,
        description="Directory of a Hugging Face causal LM to start from; None trains the tiny model from scratch.",
    )
    architecture: TinyLMConfig = TinyLMConfig()
    prompt: PromptConfig = PromptConfig()
    training: TrainSettings = TrainSettings()

    @model_validator(mode="after")
    def _one_source(self) -> ProposerConfig:
        if self.model is not None and self.base_model is not None:
            raise ValueError("set either model (use as is) or base_model (fine-tune), not both")
        return self


def sft_examples(problems: Sequence[Problem], prompt: PromptConfig) -> list[dict[str, str]]:
    """Prompt-completion pairs for SFT: the formatted question, then its reference solution."""
    examples = []
    for problem in problems:
        if not problem.solution:
            raise ValueError(f"problem {problem.id!r} has no reference solution to train on")
        examples.append({"prompt": prompt.format(problem.question), "completion": problem.solution})
    return examples


def train_proposer(config: ProposerConfig, problems: Sequence[Problem], output_dir: str | Path) -> TrainResult:
    """Train (or fine-tune) the proposer on ``problems`` and save model and tokenizer to ``output_dir``."""
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    settings = config.training
    dataset = Dataset.from_list(sft_examples(problems, config.prompt))
    with quiet_libraries():
        if config.base_model is None:
            tokenizer = build_embedded_tokenizer()
            model = build_tiny_causal_lm(config.architecture, tokenizer, seed=settings.seed)
        else:
            tokenizer = load_tokenizer(config.base_model)
            model = load_causal_lm(config.base_model, dtype="auto").train()
        prepare_staging(output_dir, settings, len(dataset))
        args = SFTConfig(**trainer_arguments(settings, output_dir), max_length=settings.max_length)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        return train_and_save(trainer, tokenizer, output_dir)
