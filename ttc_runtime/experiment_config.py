"""One run's configuration, and where a run keeps its models.

``ExperimentConfig`` holds the settings every stage shares (task, sampling, generation engine,
verifier, tracking) and one section per stage that has settings, under the stage's own name
(``prm_eval`` configures the ``prm_eval`` stage). A YAML file holds only what differs from the
defaults. ``RunLayout`` says where a run's models are, from the config alone: the CLI and the
solver read it without building a task or a pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .config import StrictModel, load_config
from .evaluation.allocators import BaselinesConfig
from .evaluation.counterpart import CounterpartConfig
from .evaluation.levels import ProposerEvalConfig
from .evaluation.revisions import RevisionEvalConfig
from .evaluation.search import SearchEvalConfig
from .evaluation.verifier import PrmEvalConfig
from .generation.base import SamplingConfig
from .generation.engines import GenerationConfig
from .models import torch_device
from .pool import PoolConfig, TrainPoolConfig
from .scoring import VerifierConfig
from .tasks import TaskConfig
from .tracking import WandbConfig
from .trainers.allocator import AllocatorConfig
from .trainers.prm import PRMConfig
from .trainers.prm_labels import LabelConfig
from .trainers.proposer import ProposerConfig
from .trainers.revision import RevisionConfig
from .trainers.revision_data import RevisionDataConfig


class ExperimentConfig(StrictModel):
    """Everything one run needs: the shared settings, then one section per stage, in stage order."""

    renamed_keys: ClassVar[dict[str, str]] = {
        "evaluation": "proposer_eval",
        "labels": "prm_labels",
        "verifier_eval": "prm_eval",
    }

    run_dir: str = Field(
        "runs/default",
        description="Where every stage writes its outputs. A config file without it runs in runs/<the file's "
        "stem>, so configs never share a run by default; a config built in code without it, in runs/default.",
    )
    device: str | None = Field(None, description="torch device for inference; None picks cuda when available.")
    processes: int = Field(
        1,
        ge=1,
        description="Local processes that share the PRM labels and the rollout pools on this machine (training stays in one), "
        "each with an equal share of the cores as torch threads (ttc_runtime.processes): on a few CPU cores "
        "two processes of one thread do 1.25-1.57x the work of one of two. Under a launcher its processes "
        "do the sharing instead.",
    )
    task: TaskConfig = TaskConfig()
    sampling: SamplingConfig = SamplingConfig()
    generation: GenerationConfig = GenerationConfig()
    verifier: VerifierConfig = VerifierConfig()
    wandb: WandbConfig = WandbConfig()
    proposer: ProposerConfig = ProposerConfig()
    proposer_eval: ProposerEvalConfig = ProposerEvalConfig()
    prm_labels: LabelConfig = LabelConfig()
    prm: PRMConfig = PRMConfig()
    prm_eval: PrmEvalConfig = PrmEvalConfig()
    search_eval: SearchEvalConfig = SearchEvalConfig()
    revision_data: RevisionDataConfig = RevisionDataConfig()
    revision: RevisionConfig = RevisionConfig()
    revision_eval: RevisionEvalConfig = RevisionEvalConfig()
    pool: PoolConfig = PoolConfig()
    train_pool: TrainPoolConfig = TrainPoolConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    allocator: AllocatorConfig = AllocatorConfig()
    counterpart: CounterpartConfig = CounterpartConfig()

    @field_validator("device")
    @classmethod
    def _a_torch_device(cls, device: str | None) -> str | None:
        """A misspelt device is a config error; whether the machine has it is checked when a stage
        loads a model, so that a config naming cuda can be checked on any machine."""
        if device is not None:
            torch_device(device)
        return device

    @model_validator(mode="after")
    def _published_prm_is_given(self) -> ExperimentConfig:
        if self.verifier.published and self.prm.model is None:
            raise ValueError(
                f"verifier.kind {self.verifier.kind!r} needs prm.model: only token-classification PRMs are trained here"
            )
        return self

    @model_validator(mode="after")
    def _matched_budget_is_pooled(self) -> ExperimentConfig:
        budget = self.allocator.adaptive_match_budget
        if budget is not None and budget not in self.pool.budgets:
            raise ValueError(
                f"allocator.adaptive_match_budget: {budget} is not one of pool.budgets {self.pool.budgets}"
            )
        if budget is not None and not any(s.name == "best_of_n_weighted" for s in self.pool.grid):
            raise ValueError("allocator.adaptive_match_budget needs best_of_n_weighted in pool.grid")
        return self

    @model_validator(mode="after")
    def _train_pool_is_another_split(self) -> ExperimentConfig:
        if self.train_pool.enabled:
            self.train_pool.pool_config(self.pool)
        return self


def load_experiment(path: str | Path) -> ExperimentConfig:
    """The experiment config in the YAML file at ``path``; without ``run_dir``, it runs in
    ``runs/<the file's stem>`` (``configs/foo.yaml`` in ``runs/foo``), so that a small config run
    from the repository root does not work in, and retrain over, another config's run."""
    config = load_config(ExperimentConfig, path)
    if "run_dir" in config.model_fields_set:
        return config
    return config.model_copy(update={"run_dir": str(Path("runs") / Path(path).stem)})


class RunLayout:
    """Where the models and outputs of one run are: each model is the configured one when given,
    else the one the run trains under its directory."""

    def __init__(self, config: ExperimentConfig) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)

    def _given_or_trained(self, given: str | None, name: str) -> Path:
        return Path(given) if given is not None else self.run_dir / name

    def proposer_dir(self) -> Path:
        return self._given_or_trained(self.config.proposer.model, "proposer")

    def prm_dir(self) -> Path:
        return self._given_or_trained(self.config.prm.model, "prm")

    def revision_dir(self) -> Path:
        return self._given_or_trained(self.config.revision.model, "revision")

    def counterpart_dir(self) -> Path:
        """The larger model of the FLOPs-matched comparison."""
        return self._given_or_trained(self.config.counterpart.model, "counterpart")

    def verifier_dir(self) -> Path:
        """What the verifier loads: the proposer itself for ``proposer_margin``, else the PRM."""
        return self.proposer_dir() if self.config.verifier.kind == "proposer_margin" else self.prm_dir()

    def pool_dir(self) -> Path:
        return self.run_dir / "pool"

    def train_pool_dir(self) -> Path:
        return self.run_dir / "train_pool"

    def policy_dir(self, policy: Literal["fixed", "adaptive"]) -> Path:
        """A trained allocator policy (the ``allocator`` stage's)."""
        return self.run_dir / "allocator" / policy
