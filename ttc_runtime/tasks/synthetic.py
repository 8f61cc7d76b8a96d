"""The embedded synthetic task: step-by-step arithmetic chains in five levels of difficulty.

A problem is a chain of operations evaluated strictly left to right (no precedence)::

    Evaluate left to right:
    7-3*2+5

and its reference solution does one operation per step, rewriting the rest of the chain, until
one number is left; the last step boxes it::

    4*2+5

    8+5

    13

    \\boxed{13}

Every line, the question's included, is padded with spaces to the longest chain's length, so that
with one token per number (see ``models.build_embedded_tokenizer``) each value sits at a fixed
distance from where the next line uses it.

Difficulty grows with the chain length and the operand sizes (the two levers that decide what a
tiny model learns in minutes on a CPU). Every step can be checked exactly, which the PRM work uses
for diagnostics. Problems are generated deterministically from ``(seed, split, level)``; training
problems that also appear in the validation or test split are skipped, so no held-out question is
ever trained on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property

import numpy as np
from pydantic import Field

from ..config import StrictModel
from .base import LEVELS, SPLITS, Problem, Task
from .grading import STEP_SEPARATOR, extract_boxed, normalize_answer, split_steps


class LevelSpec(StrictModel):
    """How the problems of one level are drawn."""

    num_ops: tuple[int, int] = Field(description="Inclusive range of the number of operations.")
    max_start: int = Field(description="Largest start value (the smallest is 1).")
    max_operand: int = Field(description="Largest operand of + and -.")
    max_multiplier: int = Field(0, description="Largest multiplier of *; 0 or 1 leaves * out.")
    max_value: int = Field(999, description="No intermediate result exceeds this; results never go below 0.")


def _default_levels() -> list[LevelSpec]:
    # Level 1 uses facts from a table of about a hundred; each level after it lengthens the chain
    # and widens the numbers, so the tiny proposer's accuracy falls from near 1 to near 0.
    return [
        LevelSpec(num_ops=(1, 2), max_start=9, max_operand=9, max_multiplier=0, max_value=9),
        LevelSpec(num_ops=(2, 2), max_start=19, max_operand=9, max_multiplier=2, max_value=19),
        LevelSpec(num_ops=(2, 3), max_start=49, max_operand=9, max_multiplier=3, max_value=49),
        LevelSpec(num_ops=(3, 3), max_start=69, max_operand=9, max_multiplier=3, max_value=69),
        LevelSpec(num_ops=(4, 5), max_start=99, max_operand=99, max_multiplier=9, max_value=999),
    ]


class GeneratedTaskConfig(StrictModel):
    """What every generated task draws from: a seed and the sizes of each split (problems per level)."""

    seed: int = Field(0, description="Base seed; each split draws from its own stream derived from it.")
    train_per_level: int = Field(8000, ge=1)
    validation_per_level: int = Field(100, ge=1)
    test_per_level: int = Field(200, ge=1)


class SyntheticTaskConfig(GeneratedTaskConfig):
    """The embedded chain task: sizes of each split (problems per level) and the level definitions."""

    levels: list[LevelSpec] = Field(default_factory=_default_levels, min_length=5, max_length=5)


class GeneratedTask(Task):
    """A task drawn from a seed: its splits (``_splits``) are drawn once, on first use."""

    _splits: dict[str, tuple[Problem, ...]]

    def problems(self, split: str) -> list[Problem]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return list(self._splits[split])


class SyntheticTask(GeneratedTask):
    """Arithmetic chains with exact per-step checking (see the module docstring)."""

    name = "synthetic"

    def __init__(self, config: SyntheticTaskConfig | None = None) -> None:
        self.config = config or SyntheticTaskConfig()

    @cached_property
    def _splits(self) -> dict[str, tuple[Problem, ...]]:
        held_out = {}
        for split in ("test", "validation"):
            held_out[split] = tuple(self._draw(split, getattr(self.config, f"{split}_per_level"), set()))
        seen = {p.question for problems in held_out.values() for p in problems}
        train = tuple(self._draw("train", self.config.train_per_level, seen))
        return {"train": train, **held_out}

    @cached_property
    def width(self) -> int:
        """Operations of the longest chain: every line is padded to this many."""
        return max(spec.num_ops[1] for spec in self.config.levels)

    def _draw(self, split: str, per_level: int, exclude: set[str]) -> list[Problem]:
        problems = []
        for level, spec in zip(LEVELS, self.config.levels, strict=True):
            rng = np.random.default_rng((self.config.seed, SPLITS.index(split), level))
            drawn, attempts = 0, 0
            while drawn < per_level:
                attempts += 1
                if attempts > 50 * per_level + 1000:
                    raise ValueError(
                        f"level {level} cannot supply {per_level} {split} problems outside the held-out"
                        " splits; widen its ranges or ask for fewer"
                    )
                question, steps, answer = _draw_chain(rng, spec, self.width)
                if question in exclude:
                    continue
                problems.append(
                    Problem(
                        id=f"synthetic-{split}-L{level}-{drawn:05d}",
                        question=question,
                        answer=str(answer),
                        level=level,
                        solution=STEP_SEPARATOR.join([*steps, f"\\boxed{{{answer}}}"]),
                    )
                )
                drawn += 1
        return problems

    def format_question(self, text: str) -> str:
        """A bare chain (``7-3*2+5``), or one under the task's header without its padding, as the
        proposer was trained on it: header and padding; any other text, or a chain longer than the
        longest trained, as given."""
        headed = headed_chain(text, [CHAIN_HEADER])
        chain = typed_chain(text) if headed is None else headed[1:]
        if chain is None or len(chain[1]) > self.width:
            return text
        return format_chain(*chain, self.width)

    def step_correctness(self, problem: Problem, steps: Sequence[str]) -> list[bool]:
        """A step is correct when it matches the reference step exactly (spaces aside) and every
        earlier step was correct; the last reference step is the boxed answer, graded as an answer."""
        reference = split_steps(problem.solution or "")
        result, on_path = [], True
        for i, step in enumerate(steps):
            if on_path:
                if i >= len(reference):
                    on_path = False
                elif i == len(reference) - 1:
                    on_path = normalize_answer(extract_boxed(step)) == normalize_answer(problem.answer)
                else:
                    on_path = step.replace(" ", "") == reference[i].replace(" ", "")
            result.append(on_path)
        return result


CHAIN_HEADER = "Evaluate left to right:"
"""The first line of a chain question (the family task lets a family name another)."""


def draw_chain(rng: np.random.Generator, spec: LevelSpec) -> tuple[list[int], list[str]]:
    """One chain: its values (start first) and operations (``"+7"``, ``"*2"``)."""
    value = int(rng.integers(1, spec.max_start + 1))
    num_ops = int(rng.integers(spec.num_ops[0], spec.num_ops[1] + 1))
    values, ops = [value], []
    for _ in range(num_ops):
        choices = ["+", "-"] + (["*"] if spec.max_multiplier >= 2 else [])
        while True:
            op = choices[int(rng.integers(len(choices)))]
            if op == "+":
                operand = int(rng.integers(1, spec.max_operand + 1))
                new = value + operand
            elif op == "-":
                if value < 1:
                    continue
                operand = int(rng.integers(1, min(spec.max_operand, value) + 1))
                new = value - operand
            else:
                operand = int(rng.integers(2, spec.max_multiplier + 1))
                new = value * operand
            if 0 <= new <= spec.max_value:
                break
        ops.append(f"{op}{operand}")
        values.append(new)
        value = new
    return values, ops


def chain_line(values: Sequence[int], ops: Sequence[str], i: int, width: int) -> str:
    """Line ``i`` of a chain: its ``i``-th value followed by the operations still to do, padded with
    spaces to ``width`` operations, so that each number of a line sits at a fixed distance from
    where the next line needs it. Step ``i`` rewrites the expression with its first operation
    done, so that everything a step needs stands in the line before it."""
    return f"{values[i]}{''.join(ops[i:])}" + " " * (2 * (width - (len(ops) - i)))


def format_chain(values: Sequence[int], ops: Sequence[str], width: int, header: str = CHAIN_HEADER) -> str:
    """The question of a chain: the header line, then its padded first line."""
    return f"{header}\n{chain_line(values, ops, 0, width)}"


def parse_chain(question: str) -> tuple[list[int], list[str]]:
    """The values (start first) and operations of a chain question's last line, evaluated left to
    right."""
    line = question.split("\n")[-1].strip()
    tokens = re.findall(r"\d+|[+\-*]", line)
    value = int(tokens[0])
    values, ops = [value], []
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        value = value + int(operand) if op == "+" else value - int(operand) if op == "-" else value * int(operand)
        values.append(value)
        ops.append(f"{op}{operand}")
    return values, ops


def typed_chain(text: str) -> tuple[list[int], list[str]] | None:
    """The values and operations of a bare chain a person typed (``7-3*2+5``, spaces allowed), or
    None for any other text."""
    stripped = text.strip()
    if not re.fullmatch(r"\d+(?:\s*[+\-*]\s*\d+)+", stripped):
        return None
    return parse_chain(stripped.replace(" ", ""))


def headed_chain(text: str, headers: Sequence[str]) -> tuple[str, list[int], list[str]] | None:
    """The header, values and operations of a chain typed under one of ``headers`` on its own
    line (``Compute:`` then ``2+3+4``, the padding left out or not), or None for any other text."""
    header, newline, rest = text.strip().partition("\n")
    chain = typed_chain(rest) if newline else None
    if chain is None or header.strip() not in headers:
        return None
    return header.strip(), *chain


def _draw_chain(rng: np.random.Generator, spec: LevelSpec, width: int) -> tuple[str, list[str], int]:
    """One problem: (question, worked steps without the boxed answer, final value)."""
    values, ops = draw_chain(rng, spec)
    steps = [chain_line(values, ops, i, width) for i in range(1, len(ops) + 1)]
    return format_chain(values, ops, width), steps, values[-1]
