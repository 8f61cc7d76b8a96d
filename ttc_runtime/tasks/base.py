"""The task interface: problems with a gold answer and a level, extraction, grading."""

from __future__ import annotations

import abc
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .grading import answers_match, extract_boxed, normalize_answer

SPLITS = ("train", "validation", "test")
LEVELS = (1, 2, 3, 4, 5)


def check_levels(levels: Sequence[int]) -> None:
    """A ``ValueError`` naming any level outside ``LEVELS`` (for configs that choose levels)."""
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown level(s) {unknown}; levels run from 1 to 5")


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and the line or row."""


class DataWarning(UserWarning):
    """Input data of which some rows were left out; the message names the file and how many rows."""


def jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """The JSON objects of a JSONL file with their line numbers; blank lines are skipped, a line
    that is not UTF-8 text or not a JSON object is a ``DataError`` naming ``file:line``. Lines are
    decoded one at a time so that a bad byte is reported with its line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{where}: not UTF-8 text (byte {error.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: malformed JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object")
            yield number, record


@dataclass(frozen=True)
class Problem:
    """One question.

    ``answer`` is the gold final answer as it would stand inside ``\\boxed{}``; ``level`` runs from
    1 (easiest) to 5 (hardest), as in MATH; ``solution`` is a reference solution whose steps are
    separated by a blank line, when the task has one.
    """

    id: str
    question: str
    answer: str
    level: int
    solution: str | None = None

    def __post_init__(self) -> None:
        if not self.question.strip():
            raise ValueError(f"problem {self.id!r}: the question is empty")
        if not str(self.answer).strip():
            raise ValueError(f"problem {self.id!r}: the gold answer is empty")
        if self.level not in LEVELS:
            raise ValueError(f"problem {self.id!r}: level must be one of {LEVELS}, got {self.level!r}")


class Task(abc.ABC):
    """A source of problems and the rules to grade solutions to them.

    Grading is shared: the final answer is the last ``\\boxed{}`` of a solution. A task that can
    check individual steps exactly (the synthetic one) overrides ``step_correctness``.
    """

    name: str

    @abc.abstractmethod
    def problems(self, split: str) -> list[Problem]:
        """The problems of ``split`` (one of ``SPLITS``), in a fixed order."""

    def extract_answer(self, solution: str) -> str | None:
        """The final answer of a solution in its canonical form (``normalize_answer``): equal strings
        are equal answers, and ``group_answers`` merges equal answers written differently."""
        return normalize_answer(extract_boxed(solution))

    def is_correct(self, solution: str, problem: Problem) -> bool:
        """True when the solution's final answer equals the problem's gold answer."""
        return answers_match(extract_boxed(solution), problem.answer)

    def format_question(self, text: str) -> str:
        """A question typed by a person, in the form the proposer was trained on (a generated task
        adds its header and padding to a bare expression); as given by default."""
        return text

    def design_pass_at_1(self, level: int, temperature: float) -> float | None:
        """The pass@1 a level is designed to have at sampling ``temperature``, for a proposer that
        has learned its training data; None where the task has no design (real data) or where a
        level's errors are left to what the proposer learns."""
        return None

    def step_correctness(self, problem: Problem, steps: Sequence[str]) -> list[bool] | None:
        """For each step, whether the solution is still on a correct path after it.

        None when the task cannot tell (real data); used for diagnostics only, never for training.
        """
        return None


def per_level(problems: Sequence[Problem], limit: int, distinct: bool = False) -> list[Problem]:
    """The first ``limit`` problems of each level, in order; with ``distinct``, a question text
    already taken is passed over (a level with fewer distinct questions gives what it has)."""
    taken: dict[int, int] = defaultdict(int)
    seen: set[str] = set()
    chosen = []
    for problem in problems:
        if taken[problem.level] < limit and not (distinct and problem.question in seen):
            taken[problem.level] += 1
            seen.add(problem.question)
            chosen.append(problem)
    return chosen
