"""Proposer SFT with TRL's ``SFTTrainer``.

The embedded default trains a tiny character-level causal LM from scratch on worked solutions of
the synthetic task; ``base_model`` points the same code at any Hugging Face causal LM to fine-tune
instead. Loss is on the solution only (prompt-completion data). The result is written with
``save_pretrained`` into a temporary directory and renamed into place, so an interrupted run
never leaves a half-written model behind.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from pydantic import Field, model_validator

from ..compute import training_flops
from ..config import StrictModel
from ..models import (
    TinyLMConfig,
    build_embedded_tokenizer,
    build_tiny_causal_lm,
    flop_params,
    load_causal_lm,
    load_tokenizer,
)
from ..prompts import PromptConfig
from ..tasks import Problem


class SFTSettings(StrictModel):
    """Optimisation settings shared by the SFT trainers (proposer, revision model)."""

    max_steps: int = Field(1100, ge=1, description="Optimizer steps.")
    batch_size: int = Field(64, ge=1, description="Sequences per step per process.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (cosine decay after warm-up).")
    adam_beta2: float = Field(0.99, gt=0, lt=1, description="0.99 rather than 0.999: faster for tiny models.")
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    max_length: int = Field(256, ge=8, description="Longest training sequence in tokens; longer ones are cut.")
    seed: int = 0
    logging_steps: int = Field(50, ge=1)
    deepspeed: str | None = Field(None, description="Path to a DeepSpeed JSON config, or None.")
    report_to: str = Field("none", description="'none' or 'wandb'.")


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
    training: SFTSettings = SFTSettings()

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


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: where, how long, at what cost."""

    output_dir: Path
    steps: int
    seconds: float
    train_tokens: int
    train_flops: int
    final_loss: float | None


def train_proposer(config: ProposerConfig, problems: Sequence[Problem], output_dir: str | Path) -> TrainResult:
    """Train (or fine-tune) the proposer on ``problems`` and save model and tokenizer to ``output_dir``."""
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    settings = config.training
    if config.base_model is None:
        tokenizer = build_embedded_tokenizer()
        model = build_tiny_causal_lm(config.architecture, tokenizer, seed=settings.seed)
    else:
        tokenizer = load_tokenizer(config.base_model)
        model = load_causal_lm(config.base_model, dtype="auto").train()

    dataset = Dataset.from_list(sft_examples(problems, config.prompt))
    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    args = SFTConfig(
        output_dir=str(staging / "trainer"),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        adam_beta2=settings.adam_beta2,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, round(settings.warmup_ratio * settings.max_steps)),
        weight_decay=settings.weight_decay,
        max_length=settings.max_length,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_strategy="no",
        report_to=settings.report_to,
        deepspeed=settings.deepspeed,
        dataloader_num_workers=0,
        disable_tqdm=False,
        include_num_input_tokens_seen="all",
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    started = time.perf_counter()
    try:
        output = trainer.train()
        seconds = time.perf_counter() - started
        trainer.save_model(str(staging / "model"))
        tokenizer.save_pretrained(str(staging / "model"))
        shutil.rmtree(output_dir, ignore_errors=True)
        (staging / "model").rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    train_tokens = int(trainer.state.num_input_tokens_seen or 0)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TrainResult(
        output_dir=output_dir,
        steps=int(output.global_step),
        seconds=seconds,
        train_tokens=train_tokens,
        train_flops=training_flops(flop_params(model), train_tokens),
        final_loss=losses[-1] if losses else None,
    )
