"""Experiment tracking with wandb: one run per stage that trains or evaluates.

Offline by default: runs are written under ``<run_dir>/wandb/`` with no account and no network,
and ``wandb sync <run_dir>/wandb/offline-run-*`` uploads them later. ``mode: online`` (or the
``WANDB_MODE`` environment variable, which wins) logs live. Each stage's run carries the whole
experiment config, the numbers of the stage's JSON record as its summary, the stage's plots as
images, its Markdown table as a ``report`` artifact, and a trained model as a ``model`` artifact
when it is small (under ``max_model_mb``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from .config import StrictModel


class WandbConfig(StrictModel):
    """Whether and how stages log to wandb."""

    enabled: bool = True
    project: str = "ttc-allocator"
    mode: Literal["offline", "online"] = Field("offline", description="WANDB_MODE, when set, wins.")
    max_model_mb: float = Field(50.0, ge=0, description="Models up to this size are logged as artifacts.")


def start(config: WandbConfig, run_dir: Path, name: str, params: dict):
    """A wandb run named ``name`` in the group of ``run_dir``, files under ``run_dir``."""
    import wandb

    return wandb.init(
        project=config.project,
        name=name,
        group=run_dir.name,
        job_type=name,
        dir=str(run_dir),
        config=params,
        mode=os.environ.get("WANDB_MODE", config.mode),
        reinit="finish_previous",
    )


def _numbers(record: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a record, two levels deep, as ``a/b`` keys."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, dict) and not prefix:
            out.update(_numbers(value, f"{name}/"))
    return out


def _size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 2**20


def log_stage(config: WandbConfig, run_dir: Path, stage: str, record_path: Path, params: dict) -> str:
    """Log a stage that just did its work and wrote ``record_path``; returns the run's directory."""
    import wandb

    run = start(config, run_dir, stage, params)
    record = json.loads(record_path.read_text())
    run.summary.update(_numbers(record))
    images = {p.stem: wandb.Image(str(p)) for p in sorted(run_dir.glob(f"{stage}*.png"))}
    if images:
        run.log(images)
    table = run_dir / f"{stage}.md"
    if table.is_file():
        artifact = wandb.Artifact(f"{stage}-report", type="report")
        artifact.add_file(str(table))
        run.log_artifact(artifact)
    model = record_path.parent
    if model != run_dir and _size_mb(model) <= config.max_model_mb:
        artifact = wandb.Artifact(f"{stage}-model", type="model")
        artifact.add_dir(str(model))
        run.log_artifact(artifact)
    directory = run.dir
    run.finish()
    return str(Path(directory).parent)


class TrainingLog:
    """Per-update training metrics, logged to their own run."""

    def __init__(self, run) -> None:
        self.run = run

    def __call__(self, metrics: dict) -> None:
        self.run.log(metrics)

    def finish(self) -> None:
        self.run.finish()


def training_logger(config: WandbConfig, run_dir: Path, name: str, params: dict) -> TrainingLog | None:
    """A ``TrainingLog`` for a run named ``name``, or None when tracking is off."""
    return TrainingLog(start(config, run_dir, name, params)) if config.enabled else None
