"""The experiment: one config, stages run in order, outputs under a run directory.

Stages:

- ``proposer``: train the proposer, or take a given model;
- ``proposer_eval``: sampled pass@1 by level on the evaluation split;
- ``prm_labels``: Monte Carlo step labels on training problems (skipped when a PRM or a stepwise
  dataset is given);
- ``prm``: train the PRM on those labels or the given dataset, or take a given PRM;
- ``prm_eval``: best-of-N selection and step AUROC on held-out problems;
- ``search_eval``: every strategy's accuracy against budget by level, with its cost, as a table
  (``search_eval.md``), a plot (``search_eval.png``) and JSON;
- ``revision_data``: the revision model's training data, sampled from the proposer and paired by
  edit distance (``trainers.revision_data``);
- ``revision``: fine-tune the proposer into the revision model with TRL (or take a given one);
- ``revision_eval``: one revision of incorrect and correct attempts, and accuracy against budget
  for every parallel-to-sequential split (``revision_eval.md``, ``revision_eval.png`` and JSON);
- ``pool``: the rollout pool, every arm of the grid and K scored samples per question, in Parquet
  shards under ``pool/`` (``pool.RolloutPool``; resumes shard by shard); with ``train_pool``, a
  second pool on other questions under ``train_pool/`` for the fitted allocators to learn from;
- ``baselines``: difficulty bins, the baseline allocators and their efficiency ratios
  (``baselines.md``, ``baselines.png``, ``baselines_generations.png`` and JSON);
- ``allocator``: the learned allocator against the baselines in the fixed-budget and adaptive
  modes, with its ablations, trained on the training pool or cross-validated on the pool
  (``allocator.md``, ``allocator.png``, ``allocator_generations.png``, ``allocator_choices.png`` and
  JSON), and the policies trained on every question it learns from, saved under ``allocator/``;
- ``counterpart`` (when ``counterpart.enabled``): the FLOPs-matched comparison, a model about 14x
  the proposer trained on the same data (``counterpart/``) against the proposer with test-time
  compute, by difficulty bin (``counterpart.md``, ``counterpart.png`` and JSON; ``flops_matched``);
- ``report``: ``report.md``, every stage's tables and plots in one document readable on its own.

A stage's output records the hash of the config parts it depends on, and of the models it reads;
a stage whose inputs are unchanged is skipped, and ``from_stage`` forces it and everything after
it to run again. Labelling resumes shard by shard after an interruption.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from .allocator_eval import (
    AllocatorEvalConfig,
    choice_shares,
    evaluate_allocators,
    format_report,
    plot_choices,
    plot_report,
    report_to_json,
)
from .budget_eval import BudgetEvalConfig, evaluate_budgets, format_budget_table, plot_budgets, points_to_json
from .config import ConfigError, StrictModel, load_config, positive
from .difficulty import difficulty
from .env.actions import ActionSpace
from .evaluate import LevelAccuracy, VerifierLevel, auroc, evaluate_verifier, pass_at_1_by_level, per_level
from .files import write_text_atomic
from .flops_matched import CounterpartConfig, compare, format_matched, plot_matched
from .generation.base import Generator, SamplingConfig
from .generation.engines import GenerationConfig, load_generator
from .policies.features import FeatureConfig, build_featurizer
from .policies.learned import LearnedAllocator
from .pool import PoolConfig, PoolInputs, PoolMismatch, RolloutPool, TrainPoolConfig, Workers
from .revision_eval import (
    RevisionEvalConfig,
    best_lengths,
    format_best_lengths,
    format_one_revision,
    one_revision,
    revision_ratios,
)
from .scoring import StepScorer, VerifierConfig, check_verifier, load_verifier
from .solver import SolverConfig
from .strategies import SearchSettings
from .tasks import (
    LEVELS,
    SPLITS,
    MathJsonlConfig,
    MathJsonlTask,
    Problem,
    SyntheticTask,
    SyntheticTaskConfig,
    Task,
    check_levels,
)
from .tasks.grading import answers_match, extract_boxed
from .tracking import RECORDS, WandbConfig, log_stage, record_stamp, training_logger
from .trainers.allocator import (
    AllocatorTrainConfig,
    calibrate_lambda,
    cross_validated_adaptive,
    cross_validated_fixed,
    greedy_columns,
    scale_of,
    train_policy,
)
from .trainers.prm import PRMConfig, load_stepwise, train_prm
from .trainers.prm_labels import LabelConfig, label_steps
from .trainers.proposer import ProposerConfig, train_proposer
from .trainers.revision import RevisionConfig, train_revision
from .trainers.revision_data import RevisionDataConfig, build_revision_data

STAGES = (
    "proposer",
    "proposer_eval",
    "prm_labels",
    "prm",
    "prm_eval",
    "search_eval",
    "revision_data",
    "revision",
    "revision_eval",
    "pool",
    "baselines",
    "allocator",
    "counterpart",
    "report",
)

TRAINING_STAGES = ("proposer", "prm", "revision")
"""The stages ``ttc train`` runs alone under a launcher: they train one model and nothing else."""

REPORTED = ("proposer_eval", "prm_eval", "search_eval", "revision_eval", "baselines", "allocator", "counterpart")
"""The stages whose outputs ``report.md`` gathers."""


class TaskConfig(StrictModel):
    """Which task: the embedded synthetic one, or MATH-format JSONL files."""

    name: Literal["synthetic", "math"] = "synthetic"
    synthetic: SyntheticTaskConfig = SyntheticTaskConfig()
    math: MathJsonlConfig = MathJsonlConfig()

    def build(self) -> Task:
        return SyntheticTask(self.synthetic) if self.name == "synthetic" else MathJsonlTask(self.math)


class EvaluationConfig(StrictModel):
    """Held-out evaluation of the proposer."""

    split: Literal["validation", "test"] = "test"
    problems_per_level: int = Field(200, ge=1)
    samples_per_problem: int = Field(1, ge=1)
    seed: int = 0


class VerifierEvalConfig(StrictModel):
    """Held-out evaluation of the verifier: best-of-N selection and step-level AUROC."""

    split: Literal["validation", "test"] = "test"
    levels: list[int] = Field(list(LEVELS), min_length=1, description="Difficulty levels evaluated.")
    problems_per_level: int = Field(100, ge=1)
    n: int = Field(16, ge=1, description="Samples per problem that the selectors choose among.")
    label_problems_per_level: int = Field(
        50, ge=0, description="Held-out problems given MC labels, to compare the PRM with them (0: skip)."
    )
    seed: int = 0

    @model_validator(mode="after")
    def _known_levels(self) -> VerifierEvalConfig:
        check_levels(self.levels)
        return self


class AllocatorConfig(StrictModel):
    """The learned allocator: features, training, the adaptive mode's compute targets, logging."""

    features: FeatureConfig = FeatureConfig()
    ablation_features: FeatureConfig = Field(
        FeatureConfig(kind="ngrams"), description="Features of the ablation run (hashed n-grams by default)."
    )
    training: AllocatorTrainConfig = AllocatorTrainConfig()
    adaptive_targets: list[float] = Field(
        [4.0, 8.0, 16.0, 32.0, 64.0],
        min_length=1,
        description="Mean compute per question (training.unit) the adaptive allocator is calibrated to: one "
        "point of its accuracy-against-compute curve each.",
    )

    @field_validator("adaptive_targets")
    @classmethod
    def _positive(cls, targets: list[float]) -> list[float]:
        return positive(targets, "targets")


class ExperimentConfig(StrictModel):
    """Everything one run needs; a YAML file holds only what differs from these defaults."""

    run_dir: str = Field("runs/embedded", description="Where every stage writes its outputs.")
    device: str | None = Field(None, description="torch device for inference; None picks cuda when available.")
    task: TaskConfig = TaskConfig()
    proposer: ProposerConfig = ProposerConfig()
    sampling: SamplingConfig = SamplingConfig()
    generation: GenerationConfig = GenerationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    labels: LabelConfig = LabelConfig()
    prm: PRMConfig = PRMConfig()
    verifier: VerifierConfig = VerifierConfig()
    verifier_eval: VerifierEvalConfig = VerifierEvalConfig()
    search_eval: BudgetEvalConfig = BudgetEvalConfig()
    revision_data: RevisionDataConfig = RevisionDataConfig()
    revision: RevisionConfig = RevisionConfig()
    revision_eval: RevisionEvalConfig = RevisionEvalConfig()
    pool: PoolConfig = PoolConfig()
    train_pool: TrainPoolConfig = TrainPoolConfig()
    baselines: AllocatorEvalConfig = AllocatorEvalConfig()
    allocator: AllocatorConfig = AllocatorConfig()
    counterpart: CounterpartConfig = CounterpartConfig()
    wandb: WandbConfig = WandbConfig()

    @model_validator(mode="after")
    def _causal_prm_is_given(self) -> ExperimentConfig:
        if self.verifier.kind == "causal_lm" and self.prm.model is None:
            raise ValueError(
                "verifier.kind 'causal_lm' needs prm.model: only token-classification PRMs are trained here"
            )
        return self

    @model_validator(mode="after")
    def _train_pool_is_another_split(self) -> ExperimentConfig:
        if self.train_pool.enabled:
            self.train_pool.pool_config(self.pool)
        return self


def load_experiment(path: str | Path) -> ExperimentConfig:
    return load_config(ExperimentConfig, path)


def _fingerprint(*parts: StrictModel | str) -> str:
    payload = json.dumps([p if isinstance(p, str) else p.model_dump(mode="json") for p in parts], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _identity(model_dir: Path) -> str:
    """What a model directory is, for fingerprints: its training stamp when this project trained
    it (a retrained model gets a new one), otherwise its resolved path."""
    stamp = model_dir / "ttc_stage.json"
    return stamp.read_text() if stamp.is_file() else str(model_dir.resolve())


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _first_process() -> bool:
    """Whether this process writes shared outputs: always, unless a launcher started it as another
    than the first (``RANK``)."""
    return int(os.environ.get("RANK", "0")) == 0


def _device(config: ExperimentConfig) -> str:
    """The configured device, else cuda when available; under a launcher (``LOCAL_RANK`` set) each
    process takes its own GPU."""
    import torch

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    local_rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{local_rank}" if device == "cuda" and local_rank is not None else device


class Experiment:
    """Runs the stages of one ``ExperimentConfig``."""

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.task = config.task.build()
        self._generators: dict[tuple[str, str], Generator] = {}

    def proposer_dir(self) -> Path:
        """The proposer to use: the configured model, or the one this run trains."""
        if self.config.proposer.model is not None:
            return Path(self.config.proposer.model)
        return self.run_dir / "proposer"

    def prm_dir(self) -> Path:
        """The PRM to use: the configured model, or the one this run trains."""
        if self.config.prm.model is not None:
            return Path(self.config.prm.model)
        return self.run_dir / "prm"

    def revision_dir(self) -> Path:
        """The revision model to use: the configured model, or the one this run trains."""
        if self.config.revision.model is not None:
            return Path(self.config.revision.model)
        return self.run_dir / "revision"

    def check_inputs(self, stages: tuple[str, ...] = STAGES) -> None:
        """Fail before any stage runs on the inputs one of ``stages`` would reject: a given PRM of
        the wrong kind, a stepwise dataset with a bad row, a malformed data file, no training
        problems to label."""
        for split in SPLITS:
            self.task.problems(split)
        prm = self.config.prm
        if prm.model is not None and self.config.verifier.kind != "proposer_margin":
            check_verifier(self.config.verifier, prm.model)
        if prm.dataset is not None:
            load_stepwise(prm.dataset)
        labelling = prm.model is None and prm.dataset is None and self.config.verifier.kind != "proposer_margin"
        if "prm_labels" in stages and labelling and not self.task.problems("train"):
            raise ValueError(
                "prm_labels: the task has no training problems to label; give prm.model (a trained PRM), "
                "prm.dataset (stepwise data to train one) or training data, or stop earlier with --to"
            )
        split = self.config.train_pool.split
        if "pool" in stages and self.config.train_pool.enabled and not self.task.problems(split):
            raise ValueError(
                f"train_pool.split: the task has no {split} problems; set train_pool.problems_per_level: 0"
            )

    def run(self, from_stage: str | None = None, to_stage: str | None = None) -> dict[str, object]:
        """Run the stages in order up to ``to_stage`` (all by default), skipping those already done
        with the same inputs; ``from_stage`` and the stages after it run even when up to date."""
        for name in (from_stage, to_stage):
            if name is not None and name not in STAGES:
                raise ValueError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
        stages = STAGES[: STAGES.index(to_stage) + 1] if to_stage else STAGES
        self.check_inputs(stages)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        forced = set(STAGES[STAGES.index(from_stage) :]) if from_stage else set()
        results: dict[str, object] = {}
        started = time.perf_counter()
        for number, stage in enumerate(stages, start=1):
            print(f"[{number}/{len(stages)}] {stage} ({time.perf_counter() - started:.0f} s elapsed)", flush=True)
            before = record_stamp(self.run_dir, stage)
            results[stage] = getattr(self, f"_stage_{stage}")(force=stage in forced)
            self._log_if_changed(stage, before)
        print(f"done in {time.perf_counter() - started:.0f} s; outputs in {self.run_dir}")
        return results

    def _log_if_changed(self, stage: str, before: object) -> None:
        """Log ``stage`` to wandb when its record changed since ``before`` (it did work)."""
        tracking = self.config.wandb
        if tracking.enabled and stage in RECORDS and record_stamp(self.run_dir, stage) != before:
            where = log_stage(tracking, self.run_dir, stage, self.config.model_dump(mode="json"))
            print(f"  logged to wandb: {where}")

    def train(self, stage: str, force: bool = False) -> dict[str, object]:
        """Run one training stage alone (``ttc train``), in every process a launcher started: the
        processes train one model together (DeepSpeed or DDP, as ``training.deepspeed`` says), the
        first one writes it, its stage record and its wandb run, and ``ttc run`` then finds the
        stage up to date. The stages before it must have run."""
        if stage not in TRAINING_STAGES:
            raise ValueError(f"unknown training stage {stage!r}; training stages are {', '.join(TRAINING_STAGES)}")
        self.check_inputs(STAGES[: STAGES.index(stage) + 1])
        needs = {
            "prm": self.config.prm.dataset or self.run_dir / "prm_labels" / "dataset",
            "revision": self.run_dir / "revision_data" / "dataset",
        }
        if stage != "proposer" and not (self.proposer_dir() / "config.json").is_file():
            raise ConfigError(f"{self.proposer_dir()} holds no proposer yet: run `ttc run CONFIG --to proposer` first")
        trains = stage != "prm" or (self.config.prm.model is None and self.config.verifier.kind != "proposer_margin")
        if trains and stage in needs and not Path(needs[stage]).exists():
            earlier = STAGES[STAGES.index(stage) - 1]
            raise ConfigError(f"{needs[stage]} does not exist yet: run `ttc run CONFIG --to {earlier}` first")
        before = record_stamp(self.run_dir, stage)
        result = getattr(self, f"_stage_{stage}")(force=force)
        if _first_process():
            self._log_if_changed(stage, before)
        return result

    def solver_config(self, policy: Literal["fixed", "adaptive"] | None = "fixed") -> SolverConfig:
        """A ``SolverConfig`` that serves this run's models and its trained allocator (``policy``
        None: the default strategy for every question). Budgets: the pool's middle one by default,
        its largest at most."""
        config = self.config
        proposer = self.proposer_dir()
        if not (proposer / "config.json").is_file():
            raise ConfigError(f"{proposer} holds no proposer: run `ttc run` on this config first")
        policy_dir = None
        if policy is not None:
            policy_dir = self.run_dir / "allocator" / policy
            if not (policy_dir / "policy.json").is_file():
                raise ConfigError(f"{policy_dir} holds no trained allocator: run `ttc run` on this config first")
        revision = self.revision_dir()
        budgets = sorted(config.pool.budgets)
        return SolverConfig(
            proposer=str(proposer),
            verifier=config.verifier,
            verifier_model=None if config.verifier.kind == "proposer_margin" else str(self.prm_dir()),
            revision_model=str(revision) if (revision / "config.json").is_file() else None,
            policy=None if policy_dir is None else str(policy_dir),
            budget=budgets[len(budgets) // 2],
            max_budget=budgets[-1],
            prompt=config.proposer.prompt,
            revision_prompt=config.revision.prompt,
            sampling=config.sampling,
            generation=config.generation,
            device=config.device,
        )

    def _generator(self) -> Generator:
        return self._load_generator(self.proposer_dir())

    def _load_generator(self, model_dir: Path) -> Generator:
        """The configured engine over ``model_dir``. A transformers model is loaded per stage and
        freed after it; a vLLM engine is kept for the rest of the process and shared by the stages
        (per model version), since vLLM does not reliably give its device memory back."""
        if self.config.generation.backend == "transformers":
            return load_generator(model_dir, self.config.generation, _device(self.config))
        key = (str(model_dir), _identity(model_dir))
        if key not in self._generators:
            self._generators[key] = load_generator(model_dir, self.config.generation, _device(self.config))
        return self._generators[key]

    def _sampling_key(self) -> StrictModel | str:
        """The sampling settings as stage keys see them: each engine draws its own samples for a
        seed, so stages sampled by vLLM are not those sampled by transformers (the default engine
        keeps the key it always had)."""
        generation = self.config.generation
        if generation.backend == "transformers":
            return self.config.sampling
        engine = {"backend": generation.backend, "dtype": generation.dtype}
        return json.dumps({"sampling": self.config.sampling.model_dump(mode="json"), **engine}, sort_keys=True)

    def verifier_dir(self) -> Path:
        """What the verifier loads: the proposer itself for ``proposer_margin``, else the PRM."""
        return self.proposer_dir() if self.config.verifier.kind == "proposer_margin" else self.prm_dir()

    def _scorer(self) -> StepScorer:
        return load_verifier(
            self.config.verifier, self.verifier_dir(), self.config.proposer.prompt, _device(self.config)
        )

    def _stage_proposer(self, force: bool) -> dict[str, object]:
        proposer = self.config.proposer
        if proposer.model is not None:
            print(f"  using the proposer at {proposer.model} (no training)")
            return {"model": proposer.model, "trained": False}
        return self._train_language_model(proposer, self.proposer_dir(), force)

    def _train_language_model(self, settings: ProposerConfig, directory: Path, force: bool) -> dict[str, object]:
        """Train a model as ``settings`` says on the task's training split into ``directory``, unless
        a model trained from the same inputs is there (the proposer, and the larger model of the
        FLOPs-matched comparison)."""
        key = _fingerprint(self.config.task, settings)
        marker = directory / "ttc_stage.json"
        done = _read_json(marker)
        if not force and done.get("fingerprint") == key:
            print(f"  up to date ({directory}, trained in {done['seconds']:.0f} s)")
            return done
        problems = self.task.problems("train")
        print(f"  training {directory} on {len(problems)} problems for {settings.training.max_steps} steps")
        result = train_proposer(settings, problems, directory)
        summary = {"fingerprint": key, "model": str(result.output_dir), "trained": True, **result.summary()}
        if _first_process():
            write_text_atomic(marker, json.dumps(summary, indent=2) + "\n")
        print(f"  trained in {result.seconds:.0f} s, final loss {result.final_loss}")
        return summary

    def _stage_proposer_eval(self, force: bool) -> dict[str, object]:
        config = self.config
        out = self.run_dir / "proposer_eval.json"
        key = _fingerprint(
            config.task, config.proposer, self._sampling_key(), config.evaluation, _identity(self.proposer_dir())
        )
        done = _read_json(out)
        if not force and done.get("fingerprint") == key:
            print("  up to date")
            print(format_levels([LevelAccuracy(**row) for row in done["levels"]]))
            return done
        problems = per_level(self.task.problems(config.evaluation.split), config.evaluation.problems_per_level)
        started = time.perf_counter()
        levels, usage = pass_at_1_by_level(
            self._generator(),
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

    def _labels_key(self) -> str:
        config = self.config
        return _fingerprint(
            config.task, config.proposer.prompt, self._sampling_key(), config.labels, _identity(self.proposer_dir())
        )

    def _label(self, problems: list[Problem], out_dir: Path, key: str) -> dict[str, object]:
        """Label ``problems`` into ``out_dir``, resuming its shards when they were made with ``key``
        and starting afresh when they were made from other inputs."""
        key_file = out_dir / "stage-key"
        if out_dir.exists() and (not key_file.is_file() or key_file.read_text() != key):
            print(f"  {out_dir} holds labels from other inputs; relabelling")
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(key_file, key)
        started = time.perf_counter()
        dataset, usage = label_steps(
            self._generator(),
            self.task,
            problems,
            self.config.proposer.prompt,
            self.config.sampling.params(),
            self.config.labels,
            out_dir,
        )
        steps = sum(len(row) for row in dataset["completions"])
        return {
            "problems": len(problems),
            "solutions": len(dataset),
            "steps": steps,
            "seconds": time.perf_counter() - started,
            "generated_tokens": usage.generated_tokens,
            "flops": usage.flops,
        }

    def _stage_prm_labels(self, force: bool) -> dict[str, object]:
        prm = self.config.prm
        if self.config.verifier.kind == "proposer_margin":
            print("  not needed: the verifier reads the proposer's margins")
            return {"labelled": False}
        if prm.model is not None or prm.dataset is not None:
            print(f"  not needed: the PRM {'is given' if prm.model else 'trains on ' + str(prm.dataset)}")
            return {"labelled": False}
        out_dir = self.run_dir / "prm_labels"
        marker = out_dir / "summary.json"
        key = self._labels_key()
        done = _read_json(marker)
        if not force and done.get("fingerprint") == key:
            print(f"  up to date ({done['solutions']} solutions, {done['steps']} steps)")
            return done
        if force:
            shutil.rmtree(out_dir, ignore_errors=True)
        problems = per_level(self.task.problems("train"), self.config.labels.problems_per_level)
        print(
            f"  {len(problems)} problems x {self.config.labels.samples_per_problem} solutions, K = {self.config.labels.rollouts} rollouts per step"
        )
        summary = {"fingerprint": key, **self._label(problems, out_dir, key)}
        if _first_process():
            write_text_atomic(marker, json.dumps(summary, indent=2) + "\n")
        print(f"  labelled {summary['steps']} steps of {summary['solutions']} solutions in {summary['seconds']:.0f} s")
        return summary

    def _stage_prm(self, force: bool) -> dict[str, object]:
        prm = self.config.prm
        if self.config.verifier.kind == "proposer_margin":
            print("  not needed: the verifier reads the proposer's margins")
            return {"trained": False}
        if prm.model is not None:
            print(f"  using the PRM at {prm.model} (no training)")
            return {"model": prm.model, "trained": False}
        source = f"dataset:{Path(prm.dataset).resolve()}" if prm.dataset else f"labels:{self._labels_key()}"
        key = _fingerprint(prm, self.config.proposer.prompt, source, _identity(self.proposer_dir()))
        marker = self.prm_dir() / "ttc_stage.json"
        done = _read_json(marker)
        if not force and done.get("fingerprint") == key:
            print(f"  up to date ({self.prm_dir()}, trained in {done['seconds']:.0f} s)")
            return done
        dataset = load_stepwise(prm.dataset or self.run_dir / "prm_labels" / "dataset")
        kind = "margin head, proposer frozen" if prm.reads == "margins" else f"hidden states, {prm.init} init"
        print(
            f"  training ({kind}, {prm.targets} labels) on {len(dataset)} solutions for {prm.training.max_steps} steps"
        )
        result = train_prm(prm, dataset, self.proposer_dir(), self.prm_dir(), self.config.proposer.prompt)
        summary = {"fingerprint": key, "model": str(result.output_dir), "trained": True, **result.summary()}
        if _first_process():
            write_text_atomic(marker, json.dumps(summary, indent=2) + "\n")
        print(f"  trained in {result.seconds:.0f} s, final loss {result.final_loss}")
        return summary

    def _verifier_key(self, *parts: StrictModel) -> str:
        """Fingerprint of what an evaluation with the verifier depends on, plus its own ``parts``."""
        config = self.config
        return _fingerprint(
            config.task,
            config.proposer.prompt,
            self._sampling_key(),
            config.verifier,
            *parts,
            _identity(self.proposer_dir()),
            _identity(self.verifier_dir()),
        )

    def _stage_prm_eval(self, force: bool) -> dict[str, object]:
        config, settings = self.config, self.config.verifier_eval
        out = self.run_dir / "prm_eval.json"
        key = self._verifier_key(config.labels, settings)
        done = _read_json(out)
        if not force and done.get("fingerprint") == key:
            print("  up to date")
            print(format_verifier_levels([VerifierLevel(**row) for row in done["levels"]]))
            return done
        held_out = [p for p in self.task.problems(settings.split) if p.level in settings.levels]
        scorer = self._scorer()
        started = time.perf_counter()
        levels, compute = evaluate_verifier(
            self._generator(),
            scorer,
            self.task,
            per_level(held_out, settings.problems_per_level),
            config.proposer.prompt,
            config.sampling.params(),
            settings.n,
            config.verifier.aggregation,
            settings.seed,
        )
        summary: dict[str, object] = {
            "fingerprint": key,
            "split": settings.split,
            "aggregation": config.verifier.aggregation,
            "seconds": time.perf_counter() - started,
            "levels": [vars(level) for level in levels],
            "middle_levels": middle_levels_summary(levels),
            "compute": compute.to_dict(),
        }
        if settings.label_problems_per_level:
            summary["mc_labels"] = self._compare_with_mc_labels(
                scorer, per_level(held_out, settings.label_problems_per_level)
            )
        write_text_atomic(out, json.dumps(summary, indent=2) + "\n")
        print(format_verifier_levels(levels))
        if "mc_labels" in summary:
            print(format_label_agreement(summary["mc_labels"]))
        return summary

    def search_settings(self, reviser: Generator | None = None) -> SearchSettings:
        """How every strategy formats prompts, samples and aggregates step scores in this run;
        ``reviser`` is the revision model, for revision chains."""
        config = self.config
        return SearchSettings(
            config.proposer.prompt,
            config.sampling.params(),
            config.verifier.aggregation,
            reviser=reviser,
            revision_prompt=config.revision.prompt,
        )

    def _stage_search_eval(self, force: bool) -> dict[str, object]:
        settings = self.config.search_eval
        out = self.run_dir / "search_eval.json"
        key = self._verifier_key(settings)
        done = _read_json(out)
        if not force and done.get("fingerprint") == key:
            print("  up to date")
            print((self.run_dir / "search_eval.md").read_text())
            return done
        held_out = [p for p in self.task.problems(settings.split) if p.level in settings.levels]
        problems = per_level(held_out, settings.problems_per_level)
        print(f"  {len(problems)} problems, budgets {settings.budgets()}, {len(settings.strategies)} strategies")
        started = time.perf_counter()
        points, skipped = evaluate_budgets(
            self._generator(), self._scorer(), self.task, problems, self.search_settings(), settings
        )
        table = format_budget_table(points)
        plot_budgets(points, self.run_dir / "search_eval.png")
        write_text_atomic(self.run_dir / "search_eval.md", table)
        summary = {
            "fingerprint": key,
            "split": settings.split,
            "seconds": time.perf_counter() - started,
            "points": points_to_json(points),
            "skipped": skipped,
        }
        write_text_atomic(out, json.dumps(summary, indent=2) + "\n")
        print(table)
        for name, reason in skipped.items():
            print(f"  skipped {name}: {reason}")
        print(f"  evaluated in {summary['seconds']:.0f} s; plot in {self.run_dir / 'search_eval.png'}")
        return summary

    def _revision_data_key(self) -> str:
        config = self.config
        return _fingerprint(
            config.task,
            self._sampling_key(),
            config.proposer.prompt,
            config.revision.prompt,
            config.revision_data,
            _identity(self.proposer_dir()),
        )

    def _stage_revision_data(self, force: bool) -> dict[str, object]:
        config = self.config
        if config.revision.model is not None:
            print(f"  not needed: the revision model is given ({config.revision.model})")
            return {"sampled": False}
        out_dir = self.run_dir / "revision_data"
        marker = out_dir / "summary.json"
        key = self._revision_data_key()
        done = _read_json(marker)
        if not force and done.get("fingerprint") == key:
            print(f"  up to date ({done['examples']} examples from {done['problems']} problems)")
            return done
        settings = config.revision_data
        problems = per_level(self.task.problems("train"), settings.problems_per_level)
        print(f"  {len(problems)} problems x {settings.samples_per_problem} samples")
        started = time.perf_counter()
        dataset = build_revision_data(
            self._generator(),
            self.task,
            problems,
            config.proposer.prompt,
            config.revision.prompt,
            config.sampling.params(),
            settings,
        )
        if len(dataset) == 0:
            raise ValueError(
                f"revision_data: none of the {settings.samples_per_problem} samples of any of {len(problems)} "
                "training problems is correct, so there is no revision example; train the proposer longer, "
                "sample more (revision_data.samples_per_problem) or give revision.model"
            )
        shutil.rmtree(out_dir, ignore_errors=True)
        dataset.save_to_disk(str(out_dir / "dataset"))
        attempts = dataset["attempts"]
        summary = {
            "fingerprint": key,
            "problems": len(problems),
            "examples": len(dataset),
            "examples_by_attempts": {str(n): attempts.count(n) for n in range(settings.max_attempts + 1)},
            "seconds": time.perf_counter() - started,
        }
        if _first_process():
            write_text_atomic(marker, json.dumps(summary, indent=2) + "\n")
        print(
            f"  {summary['examples']} examples (by number of attempts in context: "
            f"{summary['examples_by_attempts']}) in {summary['seconds']:.0f} s"
        )
        return summary

    def _stage_revision(self, force: bool) -> dict[str, object]:
        revision = self.config.revision
        if revision.model is not None:
            print(f"  using the revision model at {revision.model} (no training)")
            return {"model": revision.model, "trained": False}
        key = _fingerprint(revision, self._revision_data_key())
        marker = self.revision_dir() / "ttc_stage.json"
        done = _read_json(marker)
        if not force and done.get("fingerprint") == key:
            print(f"  up to date ({self.revision_dir()}, trained in {done['seconds']:.0f} s)")
            return done
        from datasets import load_from_disk

        dataset = load_from_disk(str(self.run_dir / "revision_data" / "dataset"))
        print(f"  fine-tuning the proposer on {len(dataset)} examples for {revision.training.max_steps} steps")
        result, fitted = train_revision(
            revision, dataset, self.proposer_dir(), self.revision_dir(), self.config.proposer.prompt
        )
        summary = {
            "fingerprint": key,
            "model": str(result.output_dir),
            "trained": True,
            "examples": len(fitted.dataset),
            "attempts_dropped_to_fit": fitted.attempts_dropped,
            "examples_dropped_to_fit": fitted.examples_dropped,
            **result.summary(),
        }
        if _first_process():
            write_text_atomic(marker, json.dumps(summary, indent=2) + "\n")
        print(
            f"  trained in {result.seconds:.0f} s, final loss {result.final_loss}; to fit "
            f"{revision.training.max_length} tokens: {fitted.attempts_dropped} attempts and "
            f"{fitted.examples_dropped} examples dropped"
        )
        return summary

    def _stage_revision_eval(self, force: bool) -> dict[str, object]:
        config, settings = self.config, self.config.revision_eval
        out = self.run_dir / "revision_eval.json"
        key = self._verifier_key(config.revision.prompt, settings, _identity(self.revision_dir()))
        done = _read_json(out)
        if not force and done.get("fingerprint") == key:
            print("  up to date")
            print((self.run_dir / "revision_eval.md").read_text())
            return done
        held_out = [p for p in self.task.problems(settings.split) if p.level in settings.levels]
        generator, scorer = self._generator(), self._scorer()
        reviser = self._load_generator(self.revision_dir())
        search = self.search_settings(reviser)
        started = time.perf_counter()
        single = one_revision(
            generator, reviser, scorer, self.task, per_level(held_out, settings.problems_per_level), search, settings
        )
        print(format_one_revision(single))
        problems = per_level(held_out, settings.ratio_problems_per_level)
        print(f"  {len(problems)} problems, chain lengths {settings.lengths()} at N = {max(settings.budgets)}")
        points = revision_ratios(generator, scorer, self.task, problems, search, settings)
        best = best_lengths(points)
        plot_budgets([p for p in points if "majority" not in p.strategy], self.run_dir / "revision_eval.png")
        report = (
            "**One revision**\n\n"
            + format_one_revision(single)
            + "\n**Parallel against sequential**: N/L chains of L attempts\n\n"
            + format_budget_table(points)
            + "\n**Best chain length L** (weighted across chains)\n\n"
            + format_best_lengths(best)
        )
        write_text_atomic(self.run_dir / "revision_eval.md", report)
        summary = {
            "fingerprint": key,
            "split": settings.split,
            "seconds": time.perf_counter() - started,
            "one_revision": [vars(level) for level in single],
            "points": points_to_json(points),
            "best_lengths": best,
        }
        write_text_atomic(out, json.dumps(summary, indent=2) + "\n")
        print(report)
        print(f"  evaluated in {summary['seconds']:.0f} s; plot in {self.run_dir / 'revision_eval.png'}")
        return summary

    def pool_dir(self) -> Path:
        return self.run_dir / "pool"

    def train_pool_dir(self) -> Path:
        return self.run_dir / "train_pool"

    def _pools(self) -> list[tuple[str, Path, PoolConfig]]:
        """The pools the ``pool`` stage collects: the evaluation pool, then the training pool if any."""
        pools = [("pool", self.pool_dir(), self.config.pool)]
        if self.config.train_pool.enabled:
            pools.append(("train_pool", self.train_pool_dir(), self.config.train_pool.pool_config(self.config.pool)))
        return pools

    def _train_pool(self) -> RolloutPool | None:
        return RolloutPool(self.train_pool_dir()) if self.config.train_pool.enabled else None

    def _pools_key(self) -> str:
        """The pools' hashes, for the fingerprints of the stages that read them."""
        return "+".join(RolloutPool(directory).manifest()["hash"] for _, directory, _ in self._pools())

    def _pool_inputs(self) -> PoolInputs:
        config = self.config
        needs_reviser = any(s.name == "revisions" for s in config.pool.grid)
        return PoolInputs(
            proposer=_identity(self.proposer_dir()),
            verifier=_identity(self.verifier_dir()),
            reviser=_identity(self.revision_dir()) if needs_reviser else "",
            settings=_fingerprint(
                config.task, config.proposer.prompt, self._sampling_key(), config.verifier, config.revision.prompt
            ),
        )

    def _stage_pool(self, force: bool) -> dict[str, object]:
        if force:
            for _, directory, _ in self._pools():
                shutil.rmtree(directory, ignore_errors=True)
        return self.collect_pool()

    def collect_pool(self, workers: Workers = Workers()) -> dict[str, object]:
        """Collect the rollout pool (and the training pool, when configured), or resume them; with
        ``workers`` from a launcher, this process's share of them (``ttc pool``: the models of the
        earlier stages must exist)."""
        config = self.config
        needs_reviser = any(s.name == "revisions" for s in config.pool.grid)
        for model in (self.proposer_dir(), self.verifier_dir()) + ((self.revision_dir(),) if needs_reviser else ()):
            if not (model / "config.json").is_file():
                raise ConfigError(f"{model} holds no model yet: run `ttc run CONFIG --to revision` first")
        summary: dict[str, object] = {}
        pending = []
        for name, directory, pool_config in self._pools():
            pool = RolloutPool(directory)
            try:
                done = pool.holds(pool_config, self._pool_inputs())
            except PoolMismatch as error:
                raise PoolMismatch(f"{error}, or run again with --from pool to rebuild it") from None
            if done:
                print(f"  {name}: up to date ({pool.directory})")
                summary[name] = {"units_done": 0, "questions": len(pool.manifest()["questions"])}
            else:
                pending.append((name, pool, pool_config))
        if not pending:
            return summary
        reviser = self._load_generator(self.revision_dir()) if needs_reviser else None
        generator, scorer, settings = self._generator(), self._scorer(), self.search_settings(reviser)
        for name, pool, pool_config in pending:
            problems = per_level(
                [p for p in self.task.problems(pool_config.split) if p.level in pool_config.levels],
                pool_config.problems_per_level,
            )
            run = len(pool_config.run_arms())
            print(
                f"  {name}: {len(problems)} {pool_config.split} problems: {pool_config.samples} samples each and "
                f"{run} arms run ({len(pool_config.arms()) - run} more resampled)"
            )
            started = time.perf_counter()
            counts = pool.collect(pool_config, self._pool_inputs(), problems, generator, scorer, settings, workers)
            summary[name] = {**counts, "questions": len(problems), "seconds": time.perf_counter() - started}
            print(
                f"  {counts['units_done']} shards written, {counts['units_skipped']} already there, "
                f"in {summary[name]['seconds']:.0f} s; {name} in {pool.directory}"
            )
        return summary

    def _stage_baselines(self, force: bool) -> dict[str, object]:
        pool = RolloutPool(self.pool_dir())
        out = self.run_dir / "baselines.json"
        key = _fingerprint(self.config.baselines, self._pools_key())
        done = _read_json(out)
        if not force and done.get("fingerprint") == key:
            print("  up to date")
            print((self.run_dir / "baselines.md").read_text())
            return done
        started = time.perf_counter()
        report = evaluate_allocators(pool, self.config.baselines, train_pool=self._train_pool())
        text = format_report(report)
        plot_report(report, self.run_dir / "baselines.png", "flops")
        plot_report(report, self.run_dir / "baselines_generations.png", "generations")
        write_text_atomic(self.run_dir / "baselines.md", text)
        summary = {"fingerprint": key, "seconds": time.perf_counter() - started, **report_to_json(report)}
        write_text_atomic(out, json.dumps(summary, indent=2) + "\n")
        print(text)
        print(f"  evaluated in {summary['seconds']:.0f} s; plots in {self.run_dir / 'baselines.png'}")
        return summary

    def _stage_allocator(self, force: bool) -> dict[str, object]:
        config, settings = self.config, self.config.allocator
        pool = RolloutPool(self.pool_dir())
        out = self.run_dir / "allocator.json"
        key = _fingerprint(settings, config.baselines, self._pools_key(), _identity(self.proposer_dir()))
        done = _read_json(out)
        if not force and done.get("fingerprint") == key:
            print("  up to date")
            print((self.run_dir / "allocator.md").read_text())
            return done
        started = time.perf_counter()
        featurizers = {
            name: build_featurizer(features, str(self.proposer_dir()), config.proposer.prompt, _device(config))
            for name, features in (("main", settings.features), ("ablation", settings.ablation_features))
        }
        training = settings.training
        label = settings.features.kind
        trained: dict[str, object] = {}

        def learned(outcomes, splits):
            featurized = {name: featurizer(outcomes.questions) for name, featurizer in featurizers.items()}
            (main, main_flops), (ablation, ablation_flops) = featurized["main"], featurized["ablation"]
            print(
                f"  {splits.description}: fixed budget ({label}, {settings.ablation_features.kind}, "
                f"supervised), then adaptive at mean compute {settings.adaptive_targets}",
                flush=True,
            )
            results = cross_validated_fixed(
                f"learned, fixed budget ({label})", main, main_flops, outcomes, splits, training
            )
            results += cross_validated_fixed(
                f"learned, fixed budget ({settings.ablation_features.kind})",
                ablation,
                ablation_flops,
                outcomes,
                splits,
                training,
            )
            results += cross_validated_fixed(
                f"supervised, fixed budget ({label})", main, main_flops, outcomes, splits, training, supervised=True
            )
            results += cross_validated_adaptive(
                f"learned, adaptive budget ({label})",
                main,
                main_flops,
                outcomes,
                splits,
                training,
                settings.adaptive_targets,
            )
            trained.update(outcomes=outcomes, splits=splits, featurized=featurized)
            return results

        report = evaluate_allocators(pool, config.baselines, learned, self._train_pool())
        outcomes, splits = trained["outcomes"], trained["splits"]
        (main, main_flops), (_, ablation_flops) = trained["featurized"]["main"], trained["featurized"]["ablation"]
        tested = np.arange(splits.tested)
        log = training_logger(config.wandb, self.run_dir, "allocator-training", settings.model_dump(mode="json"))
        fixed, history = train_policy(
            main,
            outcomes,
            splits.fit_rows,
            ActionSpace.from_arms(outcomes.within_budget(), False),
            training,
            0.0,
            1.0,
            log,
        )
        fixed.save(self.run_dir / "allocator" / "fixed", settings.features)
        questions = outcomes.questions[: splits.tested]
        timing = _decision_time(fixed, featurizers["main"], questions, max(a.budget for a in outcomes.arms))
        space = fixed.actions
        choices = {
            budget: choice_shares(
                [outcomes.arms[c] for c in greedy_columns(fixed, main, tested, budget, outcomes)],
                report.difficulty.oracle_bins,
            )
            for budget in space.budgets
        }
        plot_choices(choices, self.run_dir / "allocator_choices.png")
        middle = sorted(settings.adaptive_targets)[len(settings.adaptive_targets) // 2]
        lam, adaptive = calibrate_lambda(
            main,
            outcomes,
            splits.fit_rows,
            ActionSpace.from_arms(outcomes.arms, True),
            training,
            scale_of(outcomes, training.unit),
            middle,
        )
        adaptive.save(self.run_dir / "allocator" / "adaptive", settings.features)
        text = format_report(report)
        plot_report(report, self.run_dir / "allocator.png", "flops")
        plot_report(report, self.run_dir / "allocator_generations.png", "generations")
        write_text_atomic(self.run_dir / "allocator.md", text)
        summary = {
            "fingerprint": key,
            "seconds": time.perf_counter() - started,
            "feature_flops_mean": {
                "main": float(main_flops[tested].mean()),
                "ablation": float(ablation_flops[tested].mean()),
            },
            "final_training": {"reward": history.reward[-20:], "accuracy": history.accuracy[-20:]},
            "decision_ms_per_question": timing,
            "choices_by_oracle_bin": choices,
            "adaptive_lambda": lam,
            "adaptive_target": middle,
            **report_to_json(report),
        }
        if log is not None:
            log.finish()
        write_text_atomic(out, json.dumps(summary, indent=2) + "\n")
        print(text)
        print(
            f"  decision time per question, batched: {timing['policy']:.4f} ms (policy), "
            f"{timing['features_and_policy']:.4f} ms (features included)"
        )
        print(f"  trained and evaluated in {summary['seconds']:.0f} s; policies in {self.run_dir / 'allocator'}")
        return summary

    def counterpart_dir(self) -> Path:
        """The larger model of the FLOPs-matched comparison: the configured one, or the one this run trains."""
        if self.config.counterpart.model is not None:
            return Path(self.config.counterpart.model)
        return self.run_dir / "counterpart"

    def _stage_counterpart(self, force: bool) -> dict[str, object]:
        config, settings = self.config, self.config.counterpart
        out = self.run_dir / "counterpart.json"
        if not settings.enabled:
            print("  skipped: counterpart.enabled is false (it trains a model about 14x the proposer)")
            return {}
        if config.proposer.model is not None and settings.model is None:
            raise ConfigError("counterpart.model: give the larger model, since the proposer is not trained here")
        if settings.model is None:
            # never forced: --from does not retrain it (it costs about 14x the proposer); delete it to
            rate = settings.learning_rate or (
                config.proposer.training.learning_rate
                * config.proposer.architecture.hidden_size
                / settings.architecture.hidden_size
            )
            training = config.proposer.training.model_copy(
                update={"save_steps": settings.save_steps, "learning_rate": rate}
            )
            larger = config.proposer.model_copy(update={"architecture": settings.architecture, "training": training})
            self._train_language_model(larger, self.counterpart_dir(), force=False)
        pool = RolloutPool(self.pool_dir())
        key = _fingerprint(
            settings,
            self._sampling_key(),
            config.baselines,
            pool.manifest()["hash"],
            _identity(self.counterpart_dir()),
            _identity(self.proposer_dir()),
        )
        done = _read_json(out)
        if not force and done.get("fingerprint") == key:
            print("  up to date")
            print((self.run_dir / "counterpart.md").read_text())
            return done
        started = time.perf_counter()
        questions = pool.questions()
        larger = self._load_generator(self.counterpart_dir())
        prompts = [config.proposer.prompt.format(q) for q in questions["question"]]
        print(f"  sampling the larger model: {len(prompts)} pool questions x {settings.samples}", flush=True)
        output = larger.generate(prompts, n=settings.samples, params=config.sampling.params(), seed=settings.samples)
        large_pass = np.array(
            [
                np.mean([answers_match(extract_boxed(c.text), gold) for c in row])
                for row, gold in zip(output.completions, questions["answer"])
            ]
        )
        samples = pool.samples()
        small_params = int(pool.manifest()["proposer_params"])
        bins = difficulty(samples, small_params, config.baselines.bins).oracle_bins
        scale = larger.flop_params / small_params
        rows = compare(samples, small_params, large_pass, bins, scale, settings, config.pool.seed)
        text = format_matched(rows, scale, larger.flop_params, small_params)
        plot_matched(rows, scale, self.run_dir / "counterpart.png")
        write_text_atomic(self.run_dir / "counterpart.md", text)
        summary = {
            "fingerprint": key,
            "seconds": time.perf_counter() - started,
            "scale": scale,
            "large_params": larger.flop_params,
            "small_params": small_params,
            "large_inference_flops": output.usage.flops,
            "rows": [vars(row) for row in rows],
        }
        write_text_atomic(out, json.dumps(summary, indent=2) + "\n")
        print(text)
        return summary

    def _stage_report(self, force: bool) -> dict[str, object]:
        out = self.run_dir / "report.md"
        marker = self.run_dir / "report.json"
        sources = {name: _read_json(self.run_dir / f"{name}.json").get("fingerprint") for name in REPORTED}
        key = _fingerprint(json.dumps(sources, sort_keys=True))
        done = _read_json(marker)
        if not force and done.get("fingerprint") == key and out.is_file():
            print(f"  up to date ({out})")
            return done
        write_text_atomic(out, self.report_text())
        summary = {"fingerprint": key, "report": str(out)}
        if _first_process():
            write_text_atomic(marker, json.dumps(summary, indent=2) + "\n")
        print(f"  report in {out}")
        return summary

    def report_text(self) -> str:
        """The run's report in Markdown: each finished stage's tables and plots (paths relative to
        the run directory), in pipeline order; stages not run yet are named as missing."""
        run = self.run_dir

        def section(title: str, name: str, body: str, plots: tuple[str, ...] = ()) -> list[str]:
            if not (run / f"{name}.json").is_file():
                return [f"## {title}", "", f"Not run yet (stage `{name}`).", ""]
            lines = [f"## {title}", "", body.rstrip(), ""]
            lines += [f"![{p}]({p})" for p in plots if (run / p).is_file()]
            return lines + [""]

        def markdown(name: str) -> str:
            path = run / f"{name}.md"
            return path.read_text() if path.is_file() else ""

        def fenced(text: str) -> str:
            return "```\n" + text + "\n```"

        proposer = _read_json(run / "proposer_eval.json")
        prm = _read_json(run / "prm_eval.json")
        lines = [
            f"# Test-time compute report: {run}",
            "",
            f"What `ttc run` measured in `{run}`: each section is one stage's tables and plot, taken from the "
            "JSON, Markdown and PNG files beside this report.",
            "",
        ]
        lines += section(
            "Proposer: sampled pass@1 by level",
            "proposer_eval",
            fenced(format_levels([LevelAccuracy(**row) for row in proposer.get("levels", [])])),
        )
        lines += section(
            "Verifier: best-of-N selection and step AUROC",
            "prm_eval",
            fenced(format_verifier_levels([VerifierLevel(**row) for row in prm.get("levels", [])])),
        )
        lines += section(
            "Strategies: accuracy against budget", "search_eval", markdown("search_eval"), ("search_eval.png",)
        )
        lines += section(
            "Revisions: one revision, and the parallel-to-sequential ratio",
            "revision_eval",
            markdown("revision_eval"),
            ("revision_eval.png",),
        )
        lines += section(
            "Compute-optimal baselines and the best strategy per difficulty bin",
            "baselines",
            markdown("baselines"),
            ("baselines.png",),
        )
        lines += section(
            "Learned allocator against the baselines, and what it chose per bin",
            "allocator",
            markdown("allocator"),
            ("allocator.png", "allocator_choices.png"),
        )
        if self.config.counterpart.enabled:
            lines += section(
                "FLOPs-matched: test-time compute against a larger model",
                "counterpart",
                markdown("counterpart"),
                ("counterpart.png",),
            )
        return "\n".join(lines)

    def _compare_with_mc_labels(self, scorer: StepScorer, problems: list[Problem]) -> dict[str, object]:
        """MC-label held-out solutions and compare: the PRM against the MC labels, and the MC labels
        against the exact step correctness (how good the training signal itself is). The labels
        depend on the proposer and the problems, not on the PRM, so a new PRM reuses them."""
        out_dir = self.run_dir / "prm_eval_labels"
        self._label(problems, out_dir, _fingerprint(self._labels_key(), ",".join(p.id for p in problems)))
        dataset = load_stepwise(out_dir / "dataset")
        scores = scorer.score(dataset["prompt"], dataset["completions"]).step_scores
        result: dict[str, object] = {"problems": len(problems), "solutions": len(dataset)}
        by_level = {}
        columns = {name: dataset[name] for name in ("level", "labels", "soft_labels", "step_correct")}
        for level in sorted(set(columns["level"])):
            rows = [i for i, row_level in enumerate(columns["level"]) if row_level == level]
            prm = [x for i in rows for x in scores[i]]
            hard = [x for i in rows for x in columns["labels"][i]]
            soft = [x for i in rows for x in columns["soft_labels"][i]]
            exact = [x for i in rows for x in columns["step_correct"][i]]
            by_level[level] = {
                "steps": len(prm),
                "prm_auroc_vs_mc_hard": auroc(hard, prm),
                "prm_auroc_vs_mc_soft_half": auroc([x >= 0.5 for x in soft], prm),
                "mc_soft_auroc_vs_exact": auroc(exact, soft) if len(exact) == len(soft) else None,
            }
        result["levels"] = by_level
        return result


def _decision_time(policy, featurizer, questions: list[str], budget: int) -> dict[str, float]:
    """Milliseconds per question of the allocator's decision on a batch of ``questions``: the
    policy alone on precomputed features, and features plus policy (the best of 3 runs each)."""
    allocator = LearnedAllocator("learned", policy, featurizer)
    features, _ = featurizer(questions)
    policy_only, whole = [], []
    for _ in range(3):
        started = time.perf_counter()
        allocator.decide(features, budget)
        policy_only.append(time.perf_counter() - started)
        allocator.choose(questions, budget)
        whole.append(allocator.last_decision_seconds)
    return {
        "policy": 1000 * min(policy_only) / len(questions),
        "features_and_policy": 1000 * min(whole) / len(questions),
    }


def format_levels(levels: list[LevelAccuracy]) -> str:
    """A small table: level, problems, samples, pass@1."""
    lines = ["  level  problems  samples  pass@1"]
    lines += [f"  {a.level:>5}  {a.problems:>8}  {a.samples:>7}  {a.pass_at_1:>6.3f}" for a in levels]
    return "\n".join(lines)


MIDDLE_LEVELS = (3, 4)
"""The levels where the embedded proposer is neither always right nor always wrong (pass@1 between
0.2 and 0.7), so selection among samples has room to help; the PRM's acceptance figures average them."""


def middle_levels_summary(levels: list[VerifierLevel]) -> dict[str, float] | None:
    """Selector accuracies averaged over ``MIDDLE_LEVELS`` (None when none of them was evaluated)."""
    chosen = [level for level in levels if level.level in MIDDLE_LEVELS]
    if not chosen:
        return None
    keys = ("pass_at_1", "coverage", "majority", "best_of_n_weighted", "best_of_n_naive")
    return {key: sum(getattr(level, key) for level in chosen) / len(chosen) for key in keys}


def format_verifier_levels(levels: list[VerifierLevel]) -> str:
    """A table of the selectors and the step AUROC, level by level."""
    n = levels[0].n if levels else 0
    lines = [f"  level  problems  pass@1  majority@{n}  weighted@{n}  naive@{n}  any@{n}  step AUROC"]
    for a in levels:
        step = "-" if a.step_auroc is None else f"{a.step_auroc:.3f}"
        lines.append(
            f"  {a.level:>5}  {a.problems:>8}  {a.pass_at_1:>6.3f}  {a.majority:>{9 + len(str(n))}.3f}"
            f"  {a.best_of_n_weighted:>{9 + len(str(n))}.3f}  {a.best_of_n_naive:>{6 + len(str(n))}.3f}"
            f"  {a.coverage:>{4 + len(str(n))}.3f}  {step:>10}"
        )
    return "\n".join(lines)


def format_label_agreement(mc: dict) -> str:
    """A table of the PRM against held-out MC labels, and of those labels against exact correctness."""

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["  level  steps  PRM vs MC hard  PRM vs MC soft>=0.5  MC soft vs exact"]
    for level, row in mc["levels"].items():
        lines.append(
            f"  {level:>5}  {row['steps']:>5}  {cell(row['prm_auroc_vs_mc_hard']):>14}"
            f"  {cell(row['prm_auroc_vs_mc_soft_half']):>19}  {cell(row['mc_soft_auroc_vs_exact']):>16}"
        )
    return "\n".join(lines)
