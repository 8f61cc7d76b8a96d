"""What the trainers share: optimisation settings, trainer arguments, saving, the result record, and
keeping the libraries' noise off the console."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from transformers import PreTrainedTokenizerBase, Trainer

from ttc_runtime.compute import inference_flops, training_flops
from ttc_runtime.config import StrictModel
from ttc_runtime.console import library_bars_hidden
from ttc_runtime.models import flop_params


class TrainSettings(StrictModel):
    """Optimisation settings of a trainer (proposer SFT, PRM, revision model)."""

    max_steps: int = Field(1100, ge=1, description="Optimizer steps.")
    batch_size: int = Field(64, ge=1, description="Sequences per step per process.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (cosine decay after warm-up).")
    adam_beta2: float = Field(0.99, gt=0, lt=1, description="0.99 rather than 0.999: faster for tiny models.")
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    max_length: int = Field(256, ge=8, description="Longest training sequence in tokens; longer ones are cut.")
    activation_checkpointing: bool = Field(
        False,
        exclude=True,
        description="Recompute activations in the backward pass instead of keeping them: saves memory on a "
        "large model for about a third more compute per step. Off by default (TRL's SFT turns it on): the "
        "tiny models need no memory saving and train about 1.3x faster without it. Left out of "
        "fingerprints: the gradients are the same either way.",
    )
    seed: int = 0
    logging_steps: int = Field(50, ge=1)
    save_steps: int | None = Field(
        None,
        ge=1,
        exclude=True,
        description="Checkpoint every N steps, so that a killed run started again with the same settings "
        "and data resumes from its last checkpoint; None: no checkpoints (short runs). Left out of "
        "fingerprints: when to checkpoint does not change the model.",
    )
    deepspeed: str | None = Field(None, description="Path to a DeepSpeed JSON config, or None.")
    report_to: str = Field("none", description="'none' or 'wandb'.")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: where, how long, at what cost."""

    output_dir: Path
    steps: int
    seconds: float
    train_tokens: int
    train_flops: int
    final_loss: float | None

    def summary(self) -> dict[str, object]:
        """The figures a stage records (everything but the directory)."""
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "train_tokens": self.train_tokens,
            "train_flops": self.train_flops,
            "final_loss": self.final_loss,
        }


_SILENCED_WARNINGS = (
    # DeepSpeed's ZeRO collectives call a torch function that torch has deprecated.
    (FutureWarning, r"`torch\.distributed\.all_gather_into_tensor` is deprecated", r"torch\.distributed"),
)
_SILENCED_DEEPSPEED = (
    # Logged once, when DeepSpeed is first imported (by accelerate, inside the Trainer) on a machine
    # without CUDA: training then runs on the CPU anyway (`use_cpu` in `trainer_arguments`).
    "Setting accelerator to CPU",
    # DeepSpeed's scheduler wrapper, asked for the learning rate before the first step.
    "Attempting to get learning rate from scheduler before it has started",
)


def _deepspeed_noise(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_SILENCED_DEEPSPEED)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Around building and running a trainer: drop the library warnings and log lines that tell a
    user nothing (``_SILENCED_WARNINGS``, ``_SILENCED_DEEPSPEED``) and hide the libraries' short
    progress bars (``library_bars_hidden``). The Trainer's own progress bar over the training steps
    and its log lines every ``logging_steps`` stay: they are the progress of the long work."""
    deepspeed_logger = logging.getLogger("DeepSpeed")  # DeepSpeed configures it when first imported
    deepspeed_logger.addFilter(_deepspeed_noise)
    try:
        with warnings.catch_warnings(), library_bars_hidden():
            for category, message, module in _SILENCED_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
            yield
    finally:
        deepspeed_logger.removeFilter(_deepspeed_noise)


def staging_dir(output_dir: Path) -> Path:
    """Where a model is written before it is renamed to ``output_dir``."""
    return output_dir.with_name(output_dir.name + ".partial")


def prepare_staging(output_dir: Path, settings: TrainSettings, examples: int) -> None:
    """Clear the staging directory of ``output_dir`` for a new run, unless it holds checkpoints of a
    run with the same ``settings`` on the same number of ``examples`` (which the run then resumes).

    Under a launcher only the first process touches the directory; ``train_and_save`` makes the
    others wait for it before they look for a checkpoint."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    staging = staging_dir(output_dir)
    stamp = json.dumps({"settings": settings.model_dump(mode="json"), "examples": examples}, sort_keys=True)
    if settings.save_steps is not None and (staging / "run.json").is_file():
        if (staging / "run.json").read_text() == stamp:
            return
    shutil.rmtree(staging, ignore_errors=True)
    if settings.save_steps is not None:
        staging.mkdir(parents=True, exist_ok=True)
        (staging / "run.json").write_text(stamp)


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint of ``output_dir``'s staged run (one whose trainer state was
    written, the last file a checkpoint gets), or None."""
    folder = staging_dir(output_dir) / "trainer"
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def trainer_arguments(settings: TrainSettings, output_dir: Path) -> dict[str, Any]:
    """Keyword arguments for ``TrainingArguments`` (or a TRL config deriving from it)."""
    return dict(
        output_dir=str(staging_dir(output_dir) / "trainer"),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        adam_beta2=settings.adam_beta2,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, round(settings.warmup_ratio * settings.max_steps)),
        weight_decay=settings.weight_decay,
        activation_checkpointing=settings.activation_checkpointing,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_strategy="no" if settings.save_steps is None else "steps",
        save_steps=settings.save_steps or 500,
        save_total_limit=2,
        report_to=settings.report_to,
        deepspeed=settings.deepspeed,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="all",
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        # Without a GPU, processes started by a launcher (CPU-only machines, tests) talk over gloo.
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )


def _train_flops(model: torch.nn.Module, tokens: int) -> int:
    """6·N·D for the trained weights, 2·N·D for frozen ones (forward only): a frozen proposer
    under a trained head (the margin PRM) is never back-propagated through."""
    total = flop_params(model)
    trained = flop_params(model, trained_only=True)
    return training_flops(trained, tokens) + inference_flops(total - trained, tokens)


def train_and_save(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, output_dir: Path) -> TrainResult:
    """Train, then save model and tokenizer through the staging directory, renamed into place.

    ``output_dir`` holds either the previous model or the new one, never half of one. The staging
    directory is removed after success, and after a failure too unless the run checkpoints
    (``TrainSettings.save_steps``): then its checkpoints stay, and the next run with the same
    settings resumes from the last one. With several processes only the first writes.
    """
    staging = staging_dir(output_dir)
    main = trainer.is_world_process_zero()
    checkpoints = trainer.args.save_strategy != "no"
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        torch.distributed.barrier()  # the first process has prepared the staging directory
    started = time.perf_counter()
    succeeded = False
    try:
        output = trainer.train(resume_from_checkpoint=last_checkpoint(output_dir) if checkpoints else None)
        seconds = time.perf_counter() - started
        trainer.save_model(str(staging / "model"))  # collective under DeepSpeed; rank 0 writes
        if main:
            tokenizer.save_pretrained(str(staging / "model"))
            shutil.rmtree(output_dir, ignore_errors=True)
            (staging / "model").rename(output_dir)
        if distributed:
            torch.distributed.barrier()  # the others wait until rank 0 has renamed the model
        succeeded = True
    finally:
        if main:
            shutil.rmtree(staging if succeeded or not checkpoints else staging / "model", ignore_errors=True)
    train_tokens = int(trainer.state.num_input_tokens_seen or 0)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return TrainResult(
        output_dir=output_dir,
        steps=int(output.global_step),
        seconds=seconds,
        train_tokens=train_tokens,
        train_flops=_train_flops(trainer.model, train_tokens),
        final_loss=losses[-1] if losses else None,
    )
