"""Tasks: problems with gold answers and levels, and the grader they share."""

from .base import LEVELS, SPLITS, DataError, DataWarning, Problem, Task, check_levels, jsonl_objects, per_level
from .config import TaskConfig
from .families import ChainFamily, FamilyTask, FamilyTaskConfig, GuessFamily
from .grading import STEP_SEPARATOR, answers_match, extract_boxed, group_answers, normalize_answer, split_steps
from .math_jsonl import MathJsonlConfig, MathJsonlTask, load_math_jsonl
from .synthetic import LevelSpec, SyntheticTask, SyntheticTaskConfig

__all__ = [
    "LEVELS",
    "SPLITS",
    "STEP_SEPARATOR",
    "ChainFamily",
    "DataError",
    "DataWarning",
    "FamilyTask",
    "FamilyTaskConfig",
    "GuessFamily",
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
    "jsonl_objects",
    "load_math_jsonl",
    "normalize_answer",
    "per_level",
    "split_steps",
]
