"""MATH-format JSONL data (the public MATH and MATH-500 files), graded with math-verify.

Each line is a JSON object with ``problem`` and ``solution``; ``answer`` is taken from the record
when present (MATH-500) and otherwise from the last ``\\boxed{}`` of the solution (MATH); ``level``
is an integer 1-5 or a string such as ``"Level 3"``. ``unique_id`` becomes the problem id when
present.

**Levels.** Every problem needs a level: the stages pick problems level by level (``per_level``)
and report results by level. A row whose level is unknown (``"Level ?"``, as a few rows of MATH's
training file have, ``null``, or no ``level`` key) is skipped, and the loader warns once per file
with the number of rows skipped and the line of the first (a ``DataWarning``). A level that is
present but not 1-5 (``"Level 9"``, ``"hard"``) is an error naming ``file:line``: that is a mistake
in the data rather than a missing value, and skipping it would hide the mistake.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from pydantic import Field

from ..config import StrictModel
from .base import SPLITS, DataError, DataWarning, Problem, Task, jsonl_objects
from .grading import extract_boxed


class MathJsonlConfig(StrictModel):
    """Paths of the JSONL file of each split; a split without a file is empty."""

    train: str | None = None
    validation: str | None = None
    test: str | None = Field(None, description="E.g. MATH-500's test.jsonl.")


def _unknown_level(value: object) -> bool:
    """True for a level the data marks as unknown: ``None`` (also a missing key) or ``"Level ?"``."""
    return value is None or (isinstance(value, str) and re.fullmatch(r"\s*(?:Level\s*)?\?\s*", value) is not None)


def _level(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(?:Level\s*)?(\d)\s*", value)
        if match:
            return int(match.group(1))
    return None


def load_math_jsonl(path: str | Path) -> list[Problem]:
    """Read a MATH-format JSONL file; any bad line is an error naming its line number. Rows with an
    unknown level are skipped with one ``DataWarning`` for the file (see the module docstring)."""
    path = Path(path)
    problems = []
    skipped_lines = []
    for number, record in jsonl_objects(path):
        where = f"{path}:{number}"
        problem_text = record.get("problem")
        if not isinstance(problem_text, str) or not problem_text.strip():
            raise DataError(f"{where}: missing or empty 'problem'")
        solution = record.get("solution")
        answer = record.get("answer")
        if answer is None and isinstance(solution, str):
            answer = extract_boxed(solution)
        if answer is None or not str(answer).strip():
            raise DataError(f"{where}: no 'answer' and no \\boxed{{}} answer in 'solution'")
        if _unknown_level(record.get("level")):
            skipped_lines.append(number)
            continue
        level = _level(record.get("level"))
        if level is None or not 1 <= level <= 5:
            raise DataError(f"{where}: 'level' must be 1-5 or 'Level N', got {record.get('level')!r}")
        problems.append(
            Problem(
                id=str(record.get("unique_id") or f"{path.stem}-{number}"),
                question=problem_text,
                answer=str(answer),
                level=level,
                solution=solution if isinstance(solution, str) else None,
            )
        )
    if skipped_lines:
        rows = "row" if len(skipped_lines) == 1 else "rows"
        warnings.warn(
            f"{path}: skipped {len(skipped_lines)} {rows} with an unknown level ('Level ?', null or missing), "
            f"the first at line {skipped_lines[0]}",
            DataWarning,
            stacklevel=2,
        )
    return problems


class MathJsonlTask(Task):
    """MATH-format problems from JSONL files, one file per split."""

    name = "math"

    def __init__(self, config: MathJsonlConfig) -> None:
        self.config = config
        self._cache: dict[str, list[Problem]] = {}

    def problems(self, split: str) -> list[Problem]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if split not in self._cache:
            path = getattr(self.config, split)
            self._cache[split] = load_math_jsonl(path) if path else []
        return list(self._cache[split])
