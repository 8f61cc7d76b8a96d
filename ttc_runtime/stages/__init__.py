"""The pipeline's stages, one module each, run in the order of ``STAGES``.

Everything else about the pipeline is derived from this list: what ``ttc run --from/--to`` and
``ttc train`` accept, what ``report.md`` gathers, what is logged to wandb, what ``ttc train``
needs done first. Adding a stage is a new module here with a ``Stage`` subclass and one line
below (and, when it has settings, their section in ``ExperimentConfig`` under its name).
"""

from __future__ import annotations

from .allocator import Allocator
from .base import RunContext, Stage
from .baselines import Baselines
from .counterpart import Counterpart
from .pool import Pool
from .prm import Prm
from .prm_eval import PrmEval
from .prm_labels import PrmLabels
from .proposer import Proposer
from .proposer_eval import ProposerEval
from .report import Report
from .revision import Revision
from .revision_data import RevisionData
from .revision_eval import RevisionEval
from .search_eval import SearchEval

STAGES: tuple[Stage, ...] = (
    Proposer(),
    ProposerEval(),
    PrmLabels(),
    Prm(),
    PrmEval(),
    SearchEval(),
    RevisionData(),
    Revision(),
    RevisionEval(),
    Pool(),
    Baselines(),
    Allocator(),
    Counterpart(),
    Report(),
)

STAGE_NAMES = tuple(stage.name for stage in STAGES)
TRAINING_STAGES = tuple(stage.name for stage in STAGES if stage.trains)
"""The stages ``ttc train`` runs alone under a launcher: they train one model and nothing else."""

__all__ = ["STAGES", "STAGE_NAMES", "TRAINING_STAGES", "RunContext", "Stage"]
