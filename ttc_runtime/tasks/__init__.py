"""Tasks: problems with gold answers and levels, and the grader they share."""

from .base import LEVELS, SPLITS, DataError, DataWarning, Problem, Task, check_levels, jsonl_objects, per_level
from .grading import STEP_SEPARATOR, answers_match, extract_boxed, group_answers, normalize_answer, split_steps
from .config import TaskConfig
from .families import ChainFamily, FamilyTask, FamilyTaskConfig, GuessFamily
from .math_jsonl import MathJsonlConfig, MathJsonlTask, load_math_jsonl
from .synthetic import LevelSpec, SyntheticTask, SyntheticTaskConfig

__all__ = [
    "LEVELS",
    "ChainFamily",
    "FamilyTask",
    "FamilyTaskConfig",
    "GuessFamily",
    "DataError",
    "DataWarning",
    "jsonl_objects",
    "SPLITS",
    "STEP_SEPARATOR",
    "LevelSpec",
    "MathJsonlConfig",
    "MathJsonlTask",
    "Problem",
    "SyntheticTask",
    "SyntheticTaskConfig",
    "Task",
    "TaskConfig",
    "answers_match",
    "check_levels",
    "extract_boxed",
    "group_answers",
    "load_math_jsonl",
    "normalize_answer",
    "per_level",
    "split_steps",
]
