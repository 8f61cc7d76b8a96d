"""Which task a run or a solver uses, as a config file names it."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from ..config import StrictModel
from .base import SPLITS, Task
from .families import FamilyTask, FamilyTaskConfig
from .math_jsonl import MathJsonlConfig, MathJsonlTask
from .synthetic import SyntheticTask, SyntheticTaskConfig


class TaskConfig(StrictModel):
    """Which task: the embedded family task (the default), the embedded chain task it grew from
    (``synthetic``), or MATH-format JSONL files."""

    name: Literal["families", "synthetic", "math"] = "families"
    families: FamilyTaskConfig = FamilyTaskConfig()
    synthetic: SyntheticTaskConfig = SyntheticTaskConfig()
    math: MathJsonlConfig = MathJsonlConfig()

    @model_validator(mode="after")
    def _named(self) -> TaskConfig:
        # A section of another task with no name given is a config that means that task and runs
        # the default one instead: say so rather than ignore the section.
        if "name" not in self.model_fields_set:
            others = sorted(set(self.model_fields_set) - {self.name})
            if others:
                raise ValueError(
                    f"task.{others[0]} is set but task.name is not (the default is {self.name!r}); "
                    f"set task.name: {others[0]} to use it"
                )
        return self

    def build(self) -> Task:
        if self.name == "families":
            return FamilyTask(self.families)
        return SyntheticTask(self.synthetic) if self.name == "synthetic" else MathJsonlTask(self.math)

    def files(self) -> dict[str, str | None]:
        """The data file of each split (None: the split is empty); empty for a generated task."""
        return {split: getattr(self.math, split) for split in SPLITS} if self.name == "math" else {}
