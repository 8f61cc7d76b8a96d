"""The experiment: one config, stages run in order, outputs under a run directory.

Stages so far: ``proposer`` (train the proposer, or take a given model) and ``proposer_eval``
(sampled pass@1 by level on the test split). A stage's output records the hash of the config
parts it depends on; a stage whose inputs are unchanged is skipped, and ``from_stage`` forces it
and everything after it to run again.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from .config import StrictModel, load_config
from .evaluate import LevelAccuracy, pass_at_1_by_level, per_level
from .files import write_text_atomic
from .generation.base import SamplingParams
from .generation.hf import TransformersGenerator
from .tasks import MathJsonlConfig, MathJsonlTask, SyntheticTask, SyntheticTaskConfig, Task
from .trainers.proposer import ProposerConfig, train_proposer

STAGES = ("proposer", "proposer_eval")


class TaskConfig(StrictModel):
    """Which task: the embedded synthetic one, or MATH-format JSONL files."""

    name: Literal["synthetic", "math"] = "synthetic"
    synthetic: SyntheticTaskConfig = SyntheticTaskConfig()
    math: MathJsonlConfig = MathJsonlConfig()

    def build(self) -> Task:
        return SyntheticTask(self.synthetic) if self.name == "synthetic" else MathJsonlTask(self.math)


class SamplingConfig(StrictModel):
    """How the proposer samples during search and evaluation."""

    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(160, ge=1, description="Longest solution, in tokens.")

    def params(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens)


class EvaluationConfig(StrictModel):
    """Held-out evaluation of the proposer."""

    split: Literal["validation", "test"] = "test"
    problems_per_level: int = Field(200, ge=1)
    samples_per_problem: int = Field(1, ge=1)
    seed: int = 0


class ExperimentConfig(StrictModel):
    """Everything one run needs; a YAML file holds only what differs from these defaults."""

    run_dir: str = Field("runs/embedded", description="Where every stage writes its outputs.")
    device: str | None = Field(None, description="torch device for inference; None picks cuda when available.")
    task: TaskConfig = TaskConfig()
    proposer: ProposerConfig = ProposerConfig()
    sampling: SamplingConfig = SamplingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()


def load_experiment(path: str | Path) -> ExperimentConfig:
    return load_config(ExperimentConfig, path)


def _fingerprint(*parts: StrictModel) -> str:
    payload = json.dumps([p.model_dump(mode="json") for p in parts], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _device(config: ExperimentConfig) -> str:
    import torch

    return config.device or ("cuda" if torch.cuda.is_available() else "cpu")


class Experiment:
    """Runs the stages of one ``ExperimentConfig``."""

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.task = config.task.build()

    def proposer_dir(self) -> Path:
        """The proposer to use: the configured model, or the one this run trains."""
        if self.config.proposer.model is not None:
            return Path(self.config.proposer.model)
        return self.run_dir / "proposer"

    def run(self, from_stage: str | None = None) -> dict[str, object]:
        """Run every stage in order, skipping those already done with the same inputs."""
        if from_stage is not None and from_stage not in STAGES:
            raise ValueError(f"unknown stage {from_stage!r}; stages are {', '.join(STAGES)}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        forced = set(STAGES[STAGES.index(from_stage) :]) if from_stage else set()
        results: dict[str, object] = {}
        for number, stage in enumerate(STAGES, start=1):
            print(f"[{number}/{len(STAGES)}] {stage}", flush=True)
            results[stage] = getattr(self, f"_stage_{stage}")(force=stage in forced)
        return results

    def _stage_proposer(self, force: bool) -> dict[str, object]:
        proposer = self.config.proposer
        if proposer.model is not None:
            print(f"  using the proposer at {proposer.model} (no training)")
            return {"model": proposer.model, "trained": False}
        key = _fingerprint(self.config.task, proposer)
        marker = self.proposer_dir() / "ttc_stage.json"
        done = json.loads(marker.read_text()) if marker.is_file() else {}
        if not force and done.get("fingerprint") == key:
            print(f"  up to date ({self.proposer_dir()}, trained in {done['seconds']:.0f} s)")
            return done
        problems = self.task.problems("train")
        print(f"  training on {len(problems)} problems for {proposer.training.max_steps} steps")
        result = train_proposer(proposer, problems, self.proposer_dir())
        summary = {
            "fingerprint": key,
            "model": str(result.output_dir),
            "trained": True,
            "steps": result.steps,
            "seconds": result.seconds,
            "train_tokens": result.train_tokens,
            "train_flops": result.train_flops,
            "final_loss": result.final_loss,
        }
        write_text_atomic(marker, json.dumps(summary, indent=2) + "\n")
        print(f"  trained in {result.seconds:.0f} s, final loss {result.final_loss}")
        return summary

    def _stage_proposer_eval(self, force: bool) -> dict[str, object]:
        config = self.config
        out = self.run_dir / "proposer_eval.json"
        model_dir = self.proposer_dir()
        stamp = model_dir / "ttc_stage.json"
        # A retrained proposer writes a new stamp, which changes the key and reruns the evaluation.
        model_identity = stamp.read_text() if stamp.is_file() else str(model_dir.resolve())
        key = _fingerprint(config.task, config.proposer, config.sampling, config.evaluation)
        key += ":" + hashlib.sha256(model_identity.encode()).hexdigest()[:16]
        done = json.loads(out.read_text()) if out.is_file() else {}
        if not force and done.get("fingerprint") == key:
            print("  up to date")
            print(format_levels([LevelAccuracy(**row) for row in done["levels"]]))
            return done
        generator = TransformersGenerator.from_pretrained(model_dir, device=_device(config))
        problems = per_level(self.task.problems(config.evaluation.split), config.evaluation.problems_per_level)
        started = time.perf_counter()
        levels, usage = pass_at_1_by_level(
            generator,
            self.task,
            problems,
            config.proposer.prompt,
            config.sampling.params(),
            samples_per_problem=config.evaluation.samples_per_problem,
            seed=config.evaluation.seed,
        )
        summary = {
            "fingerprint": key,
            "temperature": config.sampling.temperature,
            "split": config.evaluation.split,
            "seconds": time.perf_counter() - started,
            "levels": [vars(level) for level in levels],
            "generated_tokens": usage.generated_tokens,
            "flops": usage.flops,
        }
        write_text_atomic(out, json.dumps(summary, indent=2) + "\n")
        print(format_levels(levels))
        return summary


def format_levels(levels: list[LevelAccuracy]) -> str:
    """A small table: level, problems, samples, pass@1."""
    lines = ["  level  problems  samples  pass@1"]
    lines += [f"  {a.level:>5}  {a.problems:>8}  {a.samples:>7}  {a.pass_at_1:>6.3f}" for a in levels]
    return "\n".join(lines)
