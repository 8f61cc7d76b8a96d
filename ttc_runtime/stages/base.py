"""What a stage is, and what every stage runs with.

A ``Stage`` is one step of the pipeline. It names its inputs (its ``key`` is their fingerprint) and
does its work; the runner (``ttc_runtime.experiment``) does the rest once for every stage:
skipping a stage whose record holds the fingerprint of the same inputs, forcing it again with
``--from``, writing the record from the first process only, logging to wandb. A ``RunContext`` is
what a stage's work reads: the config, where the models are, the task, the engines and the
fingerprint parts that several stages share.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from ..config import ConfigError, StrictModel
from ..console import first_process
from ..content import ContentHashes
from ..experiment_config import ExperimentConfig, RunLayout
from ..generation.base import Generator
from ..generation.engines import load_generator
from ..scoring import StepScorer, load_verifier
from ..strategies import SearchSettings
from ..tasks import Task
from ..trainers.common import TrainSettings

RUN_MARKER = ".ttc-run"
"""The file that makes a directory a run directory. A run writes it when it creates the directory
or takes an empty one, and writes (and deletes) only in a directory that holds it."""

_MARKER_TEXT = (
    "This directory is a run directory of ttc-allocator: `ttc run` writes, replaces and deletes files in it.\n"
)

Part = StrictModel | str
"""One part of a fingerprint: a config section (hashed by its values) or a string."""


def fingerprint(*parts: Part) -> str:
    """A short hash of ``parts``: a stage's record keeps the one of its inputs."""
    payload = json.dumps([p if isinstance(p, str) else p.model_dump(mode="json") for p in parts], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def is_record(path: Path) -> bool:
    """Whether ``path`` is a stage record: a JSON object whose ``fingerprint`` is one that
    ``fingerprint`` makes (16 hex digits), as the runner writes it."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and re.fullmatch(r"[0-9a-f]{16}", str(record.get("fingerprint"))) is not None


def check_run_dir(run_dir: Path, records: Iterable[Path]) -> None:
    """Refuse ``run_dir`` unless a run may write and delete in it: it is new, empty, marked with
    ``RUN_MARKER``, or holds one of ``records`` (the stage records, which a run directory made
    before the marker existed holds; such a directory is taken as a run directory). A directory of
    other files is refused, since the stages replace whatever they find under their own names there
    (``proposer/``, ``prm_labels/``, ``proposer_eval.json``, ...)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir {run_dir} is a file, not a directory")
    if not run_dir.is_dir() or (run_dir / RUN_MARKER).is_file() or not any(run_dir.iterdir()):
        return
    if not any(is_record(path) for path in records):
        raise ConfigError(
            f"run_dir {run_dir} holds files that no run wrote (it has no {RUN_MARKER}): give a new or empty "
            f"run_dir, or create {run_dir / RUN_MARKER} if runs may write and delete there"
        )


def trained_line(record: dict) -> str:
    """The console line of a training stage's record: where the model is, its time and final loss."""
    return f"{record['model']}, trained in {record['seconds']:.0f} s, final loss {record['final_loss']}"


def check_training(stage: Stage, ctx: RunContext, section: str, settings: TrainSettings) -> None:
    """Fail before any stage runs when ``stage`` will train with a DeepSpeed config that is not a
    file (a relative path is taken from where ``ttc`` runs); the trainer would find out only when
    the stage starts, after every stage before it."""
    path = settings.deepspeed
    if path is not None and stage.not_needed(ctx) is None and not Path(path).is_file():
        raise ConfigError(f"{section}.training.deepspeed: {path} is not a file")


class RunContext:
    """One run's config, models, task and engines, as the stages read them; ``stages`` is the
    pipeline the run belongs to (the report gathers theirs)."""

    def __init__(self, config: ExperimentConfig, stages: Sequence[Stage] = ()) -> None:
        self.config = config
        self.stages = tuple(stages)
        self.layout = RunLayout(config)
        self.run_dir = self.layout.run_dir
        self._engines: dict[tuple[str, str], Generator] = {}
        self._hashes = ContentHashes(self.run_dir / "content_hashes.json")
        self._owned = False

    def check_run_dir(self) -> None:
        """Refuse a run directory a run may not write in (``check_run_dir``), before any work."""
        check_run_dir(self.run_dir, [path for stage in self.stages if (path := stage.record_path(self))])

    def own_run_dir(self) -> None:
        """Make the run directory this run's before anything is written in it: check it, create it
        and, from the first process, write its marker when it has none (a run directory made
        before the marker existed gets it here)."""
        if self._owned:
            return
        self.check_run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        marker = self.run_dir / RUN_MARKER
        if first_process() and not marker.is_file():
            # Written in place, not renamed into place: another process of a launcher checking the
            # directory meanwhile sees the marker as soon as the directory holds anything.
            marker.write_text(_MARKER_TEXT)
        self._owned = True

    def content(self, path: str | Path) -> str:
        """The content hash of a file or directory the run reads (``ttc_runtime.content``), cached
        in the run directory by size and modification time."""
        digest = self._hashes.of(path)
        if first_process():
            self.own_run_dir()
            self._hashes.save()
        return digest

    def identity(self, model_dir: Path) -> str:
        """What a model directory is, for fingerprints: its training stamp when this run trained it
        (a retrained model gets a new one), otherwise the hash of its content, so that a model
        replaced at the same path counts as a new input."""
        stamp = model_dir / "ttc_stage.json"
        return stamp.read_text() if stamp.is_file() else f"content:{self.content(model_dir)}"

    def data_key(self, *splits: str) -> Part:
        """The task as the fingerprint of a stage that reads ``splits`` sees it. A generated task is
        its name and its own settings (the other tasks' sections do not count); a task read from
        files is its settings with, in place of the files' paths, the content of the files of
        ``splits`` only, so rewriting the test file leaves the stages that read only the training
        split up to date."""
        task = self.config.task
        files = task.files()
        if not files:
            return json.dumps({"name": task.name, task.name: getattr(task, task.name).model_dump(mode="json")})
        settings = task.model_dump(mode="json", exclude={task.name: set(files)})
        data = {split: self.content(files[split]) if files[split] else None for split in splits}
        return json.dumps({"task": settings, "data": data}, sort_keys=True)

    def training_files(self, settings: TrainSettings) -> tuple[str, ...]:
        """Fingerprint parts for what a training stage reads besides its config section: the
        DeepSpeed config's content, when there is one."""
        return () if settings.deepspeed is None else (f"deepspeed:{self.content(settings.deepspeed)}",)

    @cached_property
    def task(self) -> Task:
        return self.config.task.build()

    @property
    def device(self) -> str:
        """The configured device, else cuda when available; under a launcher (``LOCAL_RANK`` set)
        each process takes its own GPU."""
        import torch

        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        local_rank = os.environ.get("LOCAL_RANK")
        return f"cuda:{local_rank}" if device == "cuda" and local_rank is not None else device

    def generator(self) -> Generator:
        """The proposer's engine."""
        return self.load_generator(self.layout.proposer_dir())

    def load_generator(self, model_dir: Path) -> Generator:
        """The configured engine over ``model_dir``. A transformers model is loaded per stage and
        freed after it; a vLLM engine is kept for the rest of the process and shared by the stages
        (per model version), since vLLM does not reliably give its device memory back."""
        if self.config.generation.backend == "transformers":
            return load_generator(model_dir, self.config.generation, self.device)
        key = (str(model_dir), self.identity(model_dir))
        if key not in self._engines:
            self._engines[key] = load_generator(model_dir, self.config.generation, self.device)
        return self._engines[key]

    def scorer(self) -> StepScorer:
        return load_verifier(self.config.verifier, self.layout.verifier_dir(), self.config.proposer.prompt, self.device)

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

    def sampling_key(self) -> Part:
        """The sampling settings as fingerprints see them: each engine draws its own samples for a
        seed, so stages sampled by vLLM are not those sampled by transformers (the default engine
        keeps the key it always had)."""
        generation = self.config.generation
        if generation.backend == "transformers":
            return self.config.sampling
        engine = {"backend": generation.backend, "dtype": generation.dtype}
        return json.dumps({"sampling": self.config.sampling.model_dump(mode="json"), **engine}, sort_keys=True)

    def verifier_key(self, split: str, *parts: Part) -> str:
        """The fingerprint of an evaluation with the verifier on ``split``, plus its own ``parts``."""
        config = self.config
        return fingerprint(
            self.data_key(split),
            config.proposer.prompt,
            self.sampling_key(),
            config.verifier,
            *parts,
            self.identity(self.layout.proposer_dir()),
            self.identity(self.layout.verifier_dir()),
        )


class Stage:
    """One step of the pipeline. A subclass sets the class attributes and implements ``key``
    and ``run``; the rest has defaults.

    - ``name``: what ``--from``/``--to`` take, the stage's config section and its outputs' stem;
    - ``record``: the JSON file under the run directory written when the stage does its work, with
      the fingerprint of its inputs (None: the stage keeps track of its own progress, as the pool
      does shard by shard, and runs every time to resume or confirm);
    - ``outputs``: other files under the run directory that the stage writes beside its record;
      it is up to date only while they exist;
    - ``trains``: it trains one model and nothing else, so ``ttc train`` may run it alone under
      a launcher;
    - ``tracked``: a run of it is logged to wandb;
    - ``title`` and ``plots``: its section of ``report.md`` (no title: no section).
    """

    name: ClassVar[str]
    record: ClassVar[str | None]
    outputs: ClassVar[tuple[str, ...]] = ()
    trains: ClassVar[bool] = False
    tracked: ClassVar[bool] = False
    title: ClassVar[str | None] = None
    plots: ClassVar[tuple[str, ...]] = ()

    def check(self, ctx: RunContext) -> None:
        """Raise before any stage runs when this stage would reject its inputs."""

    def not_needed(self, ctx: RunContext) -> str | None:
        """Why the stage has nothing to do in this run (a model given instead of trained), or None."""
        return None

    def needs(self, ctx: RunContext) -> dict[Path, str]:
        """What the earlier stages must have written before this one can run alone: each file and
        the stage that writes it."""
        return {}

    def prepare(self, ctx: RunContext) -> None:
        """Work the stage's inputs come from that ``--from`` never forces, done before its key is
        taken (the counterpart's larger model, which costs about 14x the proposer to train)."""

    def key(self, ctx: RunContext) -> str:
        """The fingerprint of what the stage's result depends on (``fingerprint`` of its inputs)."""
        raise NotImplementedError

    def run(self, ctx: RunContext, force: bool) -> dict[str, object]:
        """Do the work and return the record's content (the runner adds the fingerprint)."""
        raise NotImplementedError

    def describe(self, record: dict) -> str:
        """One line on the console for a finished or up-to-date record."""
        seconds = record.get("seconds")
        return f"{seconds:.0f} s of work" if isinstance(seconds, int | float) else "done"

    def report_body(self, ctx: RunContext) -> str:
        """The stage's section of the report, from the files it wrote (Markdown)."""
        path = ctx.run_dir / f"{self.name}.md"
        return path.read_text() if path.is_file() else ""

    def reported(self, ctx: RunContext) -> bool:
        """Whether the report has a section for this stage in this run."""
        return self.title is not None

    def record_path(self, ctx: RunContext) -> Path | None:
        return None if self.record is None else ctx.run_dir / self.record
