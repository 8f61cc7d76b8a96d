"""The runner: one config, the stages of ``ttc_runtime.stages`` in order, outputs under a run
directory.

For every stage alike: a stage whose record holds the fingerprint of its current inputs (and whose
other outputs exist) is skipped; ``from_stage`` forces it and every stage after it to run again;
``to_stage`` stops after it. Records are written whole (never half) and by the first process only
under a launcher; a stage that did its work is logged to wandb when tracking is on. A stage that
fails leaves the records of the stages before it, so the next run resumes at the failed one.
The console gets one line per stage and the stages' own progress bars for long work.

A run works only in a run directory of its own (``stages.base.check_run_dir``): one it creates,
an empty one, or one marked by an earlier run; a directory of other files is refused before any
stage runs, so that no stage replaces or deletes what a run did not write.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from .config import ConfigError
from .console import first_process, library_bars_hidden, say
from .experiment_config import ExperimentConfig, load_experiment
from .files import write_text_atomic
from .pool import Workers
from .stages import STAGES, RunContext, Stage
from .stages.base import read_json
from .stages.pool import collect_pools
from .tasks import SPLITS
from .tracking import log_stage

__all__ = ["Experiment", "ExperimentConfig", "load_experiment"]


class Experiment:
    """Runs the ``stages`` (the pipeline's, by default) of one ``ExperimentConfig``."""

    def __init__(self, config: ExperimentConfig, stages: Sequence[Stage] = STAGES) -> None:
        self.config = config
        self.stages = tuple(stages)
        self.names = tuple(stage.name for stage in self.stages)
        self.context = RunContext(config, self.stages)
        self.run_dir = self.context.run_dir

    def stage(self, name: str) -> Stage:
        if name not in self.names:
            raise ValueError(f"unknown stage {name!r}; stages are {', '.join(self.names)}")
        return self.stages[self.names.index(name)]

    def check_inputs(self, stages: Sequence[Stage]) -> None:
        """Fail before any stage runs on inputs one of ``stages`` would reject (a malformed data
        file, a given PRM of the wrong kind, no training problems to label, ...)."""
        for split in SPLITS:
            self.context.task.problems(split)
        for stage in stages:
            stage.check(self.context)

    def run(self, from_stage: str | None = None, to_stage: str | None = None) -> dict[str, dict]:
        """Run the stages in order up to ``to_stage`` (all by default), skipping those already done
        with the same inputs; ``from_stage`` and the stages after it run even when up to date.
        Returns each stage's record."""
        first = self.stages.index(self.stage(from_stage)) if from_stage else len(self.stages)
        last = self.stages.index(self.stage(to_stage)) if to_stage else len(self.stages) - 1
        chosen = self.stages[: last + 1]
        self.context.check_run_dir()
        self.check_inputs(chosen)
        records: dict[str, dict] = {}
        started = time.perf_counter()
        for number, stage in enumerate(chosen, start=1):
            records[stage.name] = self.run_stage(stage, force=number - 1 >= first, tag=f"[{number}/{len(chosen)}]")
        say(f"done in {time.perf_counter() - started:.0f} s; outputs in {self.run_dir}")
        return records

    def run_stage(self, stage: Stage | str, force: bool = False, tag: str = "") -> dict:
        """Run one stage unless it is up to date (``force``: even then); returns its record."""
        stage = self.stage(stage) if isinstance(stage, str) else stage
        ctx, head = self.context, f"{tag} {stage.name}".strip()
        reason = stage.not_needed(ctx)
        if reason is not None:
            say(f"{head}: {reason}")
            return {}
        ctx.own_run_dir()
        stage.prepare(ctx)
        path = stage.record_path(ctx)
        key = None if path is None else stage.key(ctx)
        if path is not None and not force:
            done = read_json(path)
            if done.get("fingerprint") == key and all((ctx.run_dir / name).is_file() for name in stage.outputs):
                say(f"{head}: up to date ({stage.describe(done)})")
                return done
        say(head)
        started = time.perf_counter()
        with library_bars_hidden():
            record = stage.run(ctx, force)
        if path is not None:
            record = {"fingerprint": key, **record}
            if first_process():
                write_text_atomic(path, json.dumps(record, indent=2) + "\n")
        say(f"  {stage.describe(record)} ({time.perf_counter() - started:.0f} s)")
        tracking = self.config.wandb
        if stage.tracked and tracking.enabled and path is not None and first_process():
            where = log_stage(tracking, self.run_dir, stage.name, path, self.config.model_dump(mode="json"))
            say(f"  logged to wandb: {where}")
        return record

    def train(self, name: str, force: bool = False) -> dict:
        """Run one training stage alone (``ttc train``), in every process a launcher started: the
        processes train one model together (DeepSpeed or DDP, as ``training.deepspeed`` says), the
        first one writes it, its stage record and its wandb run, and ``ttc run`` then finds the
        stage up to date. The stages before it must have run."""
        training = [stage.name for stage in self.stages if stage.trains]
        if name not in training:
            raise ValueError(f"unknown training stage {name!r}; training stages are {', '.join(training)}")
        index = self.names.index(name)
        stage = self.stages[index]
        self.context.check_run_dir()
        self.check_inputs(self.stages[: index + 1])
        if stage.not_needed(self.context) is None:
            for path, writer in stage.needs(self.context).items():
                if not path.exists():
                    raise ConfigError(f"{path} does not exist yet: run `ttc run CONFIG --to {writer}` first")
        return self.run_stage(stage, force)

    def collect_pool(self, workers: Workers = Workers()) -> dict[str, object]:
        """Collect this process's share of the rollout pools (``ttc pool`` under a launcher)."""
        self.context.own_run_dir()
        return collect_pools(self.context, workers)
