"""The embedded family task: five families of questions, one per level, each with an error
structure that favours a different way of spending test-time compute.

- **Chains** (``kind: chain``): the synthetic task's arithmetic chains, evaluated left to right one
  operation per step (``tasks.synthetic``). The training split's worked solutions *slip*: at each
  step but the last ``clean_tail``, with probability ``slip_rate``, the new value is off by one and
  the chain goes on from it. The proposer learns those odds, so that its own slips at sampling time
  are set by the data, not by how far its training got (a chain task whose errors are facts not
  yet learned puts pass@1 on a cliff: 100 fewer steps took level 3 of the chain task from 0.69 to
  0.30). A slip is a token the
  proposer gives less probability than the right one, which the margin PRM sees step by step, so
  step-level search (beam search) repairs what whole-solution sampling cannot.
- **Guess and check** (``kind: guess``): find the ``x`` among ``candidates`` integers ``spacing``
  apart, listed in random order, with ``x op a = T`` (``op`` one of ``+ -``). A solution writes a
  guess (one step), checks it (one step) with a chain that undoes ``op`` on ``T``, adds the
  ``offset`` (the distance from the lowest candidate to the highest, so that nothing goes below 0)
  and subtracts the guess, then boxes the guess::

      Find x in 7, 3, 5:
      x+6 = 11

      x = 7

      11-6+4-7
      5+4-7
      9-7
      2 != 4
      so x = 5

      \\boxed{7}

  The check ends at the offset (4) exactly when the guess is right, and says so (``2 != 4``, or
  ``4 == 4``: a verdict on one value against a constant, as long either way, whose ``!`` appears
  nowhere else in a solution, so the margin PRM's token evidence reads it), then names the x it
  worked out on its second line (``so x = 5``), in the guess's own words, where a revision model
  reads it as it reads a guess. The solution still boxes its guess: in one pass the proposer
  answers with its guess, and what its check found helps only a second pass that reads the whole
  attempt. With x left at the start of the check's second line alone, the attempt carried it in 57
  of 58 cases, yet a revision model fine-tuned for up to 400 steps did not learn to read it there
  (one revision right 0.375 of the time with its attempt, 0.400 without); named, it is read (0.807
  against 0.315 after 125 steps, 200 questions; 0.988 against 0.388 after 300 on an earlier run).

  The check is one step, its lines joined by ``CHECK_LINE_BREAK``, because only its verdict says
  whether the guess was right: written as a chain's steps, its first lines were steps a verifier
  cannot grade (their scores told right guesses from wrong ones at a step AUROC of 0.55, the
  verdict's at 1.00, all the guesses' steps 0.76; as one step, 0.94). It is a chain on the chains'
  facts and layout, because the proposer learns nothing else in minutes: a check written on one
  line (``7+6 = 13 != 11``) got its value right 50% of the time after 1,000 steps, and one laid out
  as a chain got it right 97% of the time but its verdict (``13 = 11? no``, an equality of two
  numbers) 55%, chance; the verdict on the last value alone is right 99% of the time. Candidates
  two apart keep a check off by one (the chains' slip) from ending at 4 for a wrong guess; listing
  them in random order gives six questions per set of candidates. The training split's guesses are
  drawn uniformly among the candidates, and the guess comes before its check, so the proposer
  guesses (pass@1 = 1 / candidates by design). A bare guess tells a verifier nothing, so beam
  search, which keeps few first steps before any check is written, does little better than one
  sample; best-of-N, whose verifier reads each whole solution with its check, keeps the right guess
  among N.

Held-out splits (validation, test) hold clean reference solutions: no slips, the right guess. Every
line of a chain, the question's included, is padded to the longest chain's width, as in the chain
task. Levels order the families; ``FamilyTaskConfig`` holds one family per level.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from ..config import StrictModel
from .base import LEVELS, SPLITS, Problem
from .grading import STEP_SEPARATOR, extract_boxed, normalize_answer, split_steps
from .synthetic import (
    CHAIN_HEADER,
    GeneratedTask,
    GeneratedTaskConfig,
    LevelSpec,
    chain_line,
    draw_chain,
    format_chain,
    headed_chain,
    parse_chain,
    typed_chain,
)


class ChainFamily(LevelSpec):
    """Arithmetic chains (``tasks.synthetic.LevelSpec``) whose training solutions slip."""

    kind: Literal["chain"] = "chain"
    slip_rate: float = Field(
        0.0, ge=0, lt=1, description="Chance that a training solution's step is off by one (the chain goes on from it)."
    )
    header: str = Field(CHAIN_HEADER, min_length=1, description="The question's first line.")
    clean_tail: int = Field(
        0,
        ge=0,
        description="A training solution's last this many steps never slip: they look like a short chain's "
        "steps, whose family should not learn to slip.",
    )
    train_share: float = Field(1.0, gt=0, description="Training problems of this family per train_per_level.")

    def admits(self, values: Sequence[int], ops: Sequence[str]) -> bool:
        """Whether this family draws chains like this one: its number of operations, start,
        operands and values within the family's ranges."""
        low, high = self.num_ops
        operands = [int(op[1:]) for op in ops]
        multipliers = [n for op, n in zip(ops, operands) if op[0] == "*"]
        return (
            low <= len(ops) <= high
            and 1 <= values[0] <= self.max_start
            and all(n <= self.max_operand for op, n in zip(ops, operands) if op[0] != "*")
            and all(n <= self.max_multiplier for n in multipliers)
            and all(0 <= v <= self.max_value for v in values)
        )


class GuessFamily(StrictModel):
    """Find x with ``x op a = T`` among evenly spaced candidates, listed in random order, by
    guessing and checking (see the module docstring)."""

    kind: Literal["guess"] = "guess"
    ops: list[Literal["+", "-"]] = Field(["+", "-"], min_length=1, description="Operations drawn from.")
    operand: tuple[int, int] = Field((1, 9), description="Inclusive range of a.")
    max_candidate: int = Field(
        9,
        ge=1,
        description="Largest candidate: the check subtracts the guess, and the chains teach operands to 9.",
    )
    max_value: int = Field(
        19,
        ge=1,
        description="T and every value of a check stay within 0..max_value: the facts the proposer learns from "
        "the chains (a check it cannot compute says nothing about its guess).",
    )
    candidates: int = Field(3, ge=2, description="How many integers the question offers.")
    spacing: int = Field(
        2, ge=1, description="Distance between neighbouring candidates: 2 keeps a check off by one from reading right."
    )
    train_share: float = Field(1.0, gt=0, description="Training problems of this family per train_per_level.")

    @model_validator(mode="after")
    def _ranges(self) -> GuessFamily:
        low, high = self.operand
        if not 1 <= low <= high:
            raise ValueError(f"operand: expected 1 <= low <= high, got {low}..{high}")
        if self.max_candidate <= self.offset:
            raise ValueError(
                f"max_candidate ({self.max_candidate}) must exceed (candidates - 1) * spacing ({self.offset}), "
                "so that some set of candidates lies above 0"
            )
        return self

    @property
    def offset(self) -> int:
        """What a check adds before it subtracts the guess, so that it never goes below 0: the
        distance from the lowest candidate to the highest. A right guess's check ends at it."""
        return (self.candidates - 1) * self.spacing

    def draw(self, rng: np.random.Generator) -> tuple[str, int, int, int, list[int]]:
        """One question's (op, a, x, T, candidates in the order the question lists them): every
        candidate in 1..max_candidate, T and the check's values within range."""
        while True:
            op = self.ops[int(rng.integers(len(self.ops)))]
            a = int(rng.integers(self.operand[0], self.operand[1] + 1))
            low = int(rng.integers(1, self.max_candidate - self.offset + 1))
            window = [low + i * self.spacing for i in range(self.candidates)]
            x = window[int(rng.integers(self.candidates))]
            target = _apply(x, f"{op}{a}")
            if 0 <= target <= self.max_value and x + self.offset <= self.max_value:
                return op, a, x, target, [int(g) for g in rng.permutation(window)]


Family = Annotated[ChainFamily | GuessFamily, Field(discriminator="kind")]


def _default_families() -> list[ChainFamily | GuessFamily]:
    # Design pass@1 at temperature 0.8 (FamilyTask.design_pass_at_1), for a proposer that has
    # learned its data: a slip of 0.45 split over +1 and -1 becomes 0.40 a step (probabilities to
    # the power 1 / 0.8), over five of a 7-operation chain, right 0.26 of the time since slips up
    # and down cancel; a slip of 0.5 becomes 0.46 a step over four of a 5-operation chain, clean
    # 0.09 of the time but right 0.26 (measured: 0.43 a step, pass@1 0.27-0.31; at 0.35 over three
    # steps the long chains were right 0.50 of the time, which left best-of-N nothing to miss); a
    # guess among 3 is right 1 time in 3; 2 operations on numbers below 10 are near 1; 4-5
    # operations on numbers to 999 (facts a 1M model does not learn in minutes) near 0. Two chain
    # families that slip over many steps, not one: with revision chains that work (the revision
    # model reads the guesses and, fine-tuned on correct solutions, writes cleaner chains than the
    # proposer), step-level search beats them only where many steps may slip. With 3-operation
    # chains that slip on one step in place of the 7-operation ones (0.35, design 0.72), revision
    # chains were their best arm and the best single arm at N = 4, and only the long chains beat it
    # (+0.142 [-0.004, +0.275]); with the 7-operation chains beam search beats revision chains by
    # +0.221 and +0.146 on the two families. The 7-operation chains have a header of their own
    # (`Work out:`) and never slip on their last two steps, which look like an easy chain
    # (5-operation chains that might slip at every step in their place took the easy chains to
    # 0.89). The easy chains have two operations, not one or two: 1,000 steps left the one-operation
    # ones wrong 28 times in 33 (greedy; the value copied or off) while the two-operation ones were
    # right 67 times in 67. The easy chains look like the last two steps of a longer chain, so those
    # steps never slip (with slips on every step the proposer carried them over to the easy chains:
    # pass@1 0.79 under the chains' header, 0.74 under one of their own; padded to a width of their
    # own the easy chains lost the facts they share with the chains: 0.64). They have a header of
    # their own and twice the training questions. Guesses have twice the training questions (their
    # checks are a fifth of a chain's tokens) and the out-of-reach chains a quarter (their facts are
    # not learnt; a few show the format).
    return [
        ChainFamily(
            num_ops=(2, 2),
            max_start=9,
            max_operand=9,
            max_multiplier=0,
            max_value=9,
            header="Compute:",
            train_share=2.0,
        ),
        ChainFamily(
            num_ops=(7, 7),
            max_start=19,
            max_operand=9,
            max_multiplier=2,
            max_value=19,
            slip_rate=0.45,
            clean_tail=2,
            header="Work out:",
        ),
        GuessFamily(train_share=2.0),
        ChainFamily(
            num_ops=(5, 5), max_start=19, max_operand=9, max_multiplier=2, max_value=19, slip_rate=0.5, clean_tail=1
        ),
        ChainFamily(num_ops=(4, 5), max_start=99, max_operand=99, max_multiplier=9, max_value=999, train_share=0.25),
    ]


class FamilyTaskConfig(GeneratedTaskConfig):
    """The family task: sizes of each split (problems per level) and one family per level."""

    levels: list[Family] = Field(default_factory=_default_families, min_length=5, max_length=5)


GUESS_HEADER = re.compile(r"^Find x in (\d+(?:, \d+)*):\nx([+\-*]\d+) = (\d+)$")


class FamilyTask(GeneratedTask):
    """Chains and guess-and-check questions in five levels (see the module docstring)."""

    name = "families"

    def __init__(self, config: FamilyTaskConfig | None = None) -> None:
        self.config = config or FamilyTaskConfig()

    @cached_property
    def width(self) -> int:
        """Operations of the longest chain: every chain line is padded to this many."""
        return max((f.num_ops[1] for f in self.config.levels if isinstance(f, ChainFamily)), default=1)

    @cached_property
    def _splits(self) -> dict[str, tuple[Problem, ...]]:
        held_out, seen = {}, set()
        for split in ("test", "validation"):
            held_out[split] = tuple(self._draw(split, getattr(self.config, f"{split}_per_level"), seen))
        train = tuple(self._draw("train", self.config.train_per_level, seen))
        return {"train": train, **held_out}

    def _draw(self, split: str, per_level: int, exclude: set[str]) -> list[Problem]:
        """``per_level`` problems of each family (times its share in training) outside ``exclude``;
        a held-out split's questions are distinct and join ``exclude`` (a family with few questions,
        such as the guesses, would otherwise measure some twice)."""
        problems = []
        for level, family in zip(LEVELS, self.config.levels, strict=True):
            rng = np.random.default_rng((self.config.seed, SPLITS.index(split), level, 1))
            wanted = max(1, round(per_level * family.train_share)) if split == "train" else per_level
            drawn, attempts = 0, 0
            while drawn < wanted:
                attempts += 1
                if attempts > 50 * wanted + 1000:
                    raise ValueError(
                        f"level {level} cannot supply {wanted} {split} problems outside the held-out"
                        " splits; widen its ranges or ask for fewer"
                    )
                question, answer, solution = self._one(rng, family, demonstration=split == "train")
                if question in exclude:
                    continue
                if split != "train":
                    exclude.add(question)
                problems.append(
                    Problem(f"families-{split}-L{level}-{drawn:05d}", question, str(answer), level, solution)
                )
                drawn += 1
        return problems

    def _one(self, rng: np.random.Generator, family: ChainFamily | GuessFamily, demonstration: bool):
        """(question, answer, worked solution) of one problem; a demonstration (training split)
        slips or guesses as the family says, a reference does neither."""
        if isinstance(family, GuessFamily):
            op, a, x, target, listed = family.draw(rng)
            guess = listed[int(rng.integers(family.candidates))] if demonstration else x
            question = f"Find x in {', '.join(map(str, listed))}:\nx{op}{a} = {target}"
            return question, x, guess_solution(guess, f"{op}{a}", target, family.offset, self.width)
        values, ops = draw_chain(rng, family)
        question = format_chain(values, ops, self.width, family.header)
        if demonstration and family.slip_rate > 0:
            values = _slipped(rng, values, ops, family)
        steps = [chain_line(values, ops, i, self.width) for i in range(1, len(ops) + 1)]
        return question, values_of(question)[-1], STEP_SEPARATOR.join([*steps, f"\\boxed{{{values[-1]}}}"])

    def design_pass_at_1(self, level: int, temperature: float, samples: int = 20_000) -> float | None:
        """A level's designed pass@1 at ``temperature``: 1 / candidates for the guesses (the
        training guesses are uniform); for chains that slip, the share of ``samples`` chains of the
        family, slipped as its training solutions slip at the slip rate ``temperature`` gives (a
        proposer that learned the right value at 1 - s and each neighbour at s / 2 samples them in
        proportion to their probabilities to the power 1 / temperature), that still end on the right
        value: slips on ``+`` and ``-`` steps carry over, so one up and one down cancel, and a long
        chain is right far more often than it is clean (5 operations at a slip of 0.5: 0.26, against
        0.09 without a slip). None for chains that do not slip, whose pass@1 is what the proposer
        learns (near 1 on the easy chains, near 0 out of reach)."""
        family = self.config.levels[LEVELS.index(level)]
        if isinstance(family, GuessFamily):
            return 1 / family.candidates
        if family.slip_rate == 0:
            return None
        tempered = family.model_copy(update={"slip_rate": _tempered_slip(family.slip_rate, temperature)})
        rng = np.random.default_rng((self.config.seed, level, 2))
        hits = 0
        for _ in range(samples):
            values, ops = draw_chain(rng, family)
            hits += _slipped(rng, values, ops, tempered)[-1] == values[-1]
        return hits / samples

    def step_correctness(self, problem: Problem, steps: Sequence[str]) -> list[bool]:
        """A step is correct when it is the reference step (spaces aside) and every earlier step was
        correct; the boxed answer is graded as an answer (a guess step is right when its guess is
        the answer, a check when it is the answer's check). The reference comes from the question,
        never from a stored solution (a guess's offset is the span of the listed candidates)."""
        guess = GUESS_HEADER.match(problem.question)
        if guess:
            listed, op, target = guess.groups()
            candidates = [int(c) for c in listed.split(", ")]
            offset = max(candidates) - min(candidates)
            reference = split_steps(guess_solution(int(problem.answer), op, int(target), offset, self.width))
        else:
            values, ops = parse_chain(problem.question)
            reference = [chain_line(values, ops, i, self.width) for i in range(1, len(ops) + 1)]
            reference.append(f"\\boxed{{{problem.answer}}}")
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

    def format_question(self, text: str) -> str:
        """A question as the proposer was trained on it: a bare chain (``7-3*2+5``) gets the header
        of the first chain family that draws chains like it (``ChainFamily.admits``), else of the
        first whose number of operations it has, else of the shortest family it fits, padded to
        the longest chain's width; a chain typed under a chain family's header keeps that header and
        is padded; any other text (a question already in a family's format) is kept, as is a chain
        longer than the longest trained."""
        chains = [f for f in self.config.levels if isinstance(f, ChainFamily)]
        headed = headed_chain(text, [f.header for f in chains])
        if headed is not None and len(headed[2]) <= self.width:
            return format_chain(*headed[1:], self.width, headed[0])
        chain = typed_chain(text)
        if chain is None or len(chain[1]) > self.width:
            return text
        count = len(chain[1])
        admitting = [f for f in chains if f.admits(*chain)]
        fitting = [f for f in chains if f.num_ops[0] <= count <= f.num_ops[1]]
        longer = sorted((f for f in chains if f.num_ops[1] >= count), key=lambda f: f.num_ops[1])
        family = (admitting or fitting or longer or chains)[0]
        return format_chain(*chain, self.width, family.header)


CHECK_LINE_BREAK = " \n"
"""What joins a check's lines into one step: as many tokens as ``STEP_SEPARATOR``, so that each
number of a check stands as far from where the next line needs it as in a chain (the fixed-offset
lookups the proposer learns from the chains), but not a step boundary."""


def guess_solution(guess: int, op: str, target: int, offset: int, width: int) -> str:
    """The worked solution that tries ``guess`` for ``x op = target`` (``op`` as ``"+5"``) in three
    steps: the guess; its check, a chain padded to ``width`` operations that undoes ``op`` on the
    target, adds ``offset`` and subtracts the guess (ending at ``offset`` exactly when the guess is
    right), with its verdict and the x it worked out, all one step; the boxed guess."""
    undo = ("-" if op[0] == "+" else "+") + op[1:]
    ops = [undo, f"+{offset}", f"-{guess}"]
    values = [target]
    for step in ops:
        values.append(_apply(values[-1], step))
    check = [chain_line(values, ops, i, width) for i in range(len(values) - 1)]
    verdict = "==" if values[-1] == offset else "!="
    check.extend([f"{values[-1]} {verdict} {offset}", f"so x = {values[1]}"])
    return STEP_SEPARATOR.join([f"x = {guess}", CHECK_LINE_BREAK.join(check), f"\\boxed{{{guess}}}"])


def _tempered_slip(rate: float, temperature: float) -> float:
    """The chance of a slip at ``temperature`` for a proposer that writes the right value at
    1 - ``rate`` and each neighbour at ``rate`` / 2 (greedy, temperature 0: the likelier of the two)."""
    if temperature == 0:
        return 0.0 if 1 - rate >= rate / 2 else 1.0
    right, slip = (1 - rate) ** (1 / temperature), 2 * (rate / 2) ** (1 / temperature)
    return slip / (right + slip)


def values_of(question: str) -> list[int]:
    """The values of a chain question's evaluation, start first."""
    values, _ = parse_chain(question)
    return values


def _slipped(rng: np.random.Generator, values: list[int], ops: list[str], family: ChainFamily) -> list[int]:
    """The chain's values with each step but the last ``clean_tail`` off by one with probability
    ``slip_rate`` (up or down at random, the other way where the rest of the chain would leave the
    family's range, not at all where both would), later steps computed from the written value."""
    out = [values[0]]
    for i, op in enumerate(ops):
        new = _apply(out[-1], op)
        if i < len(ops) - family.clean_tail and rng.random() < family.slip_rate:
            for step in (1, -1) if rng.random() < 0.5 else (-1, 1):
                if _in_range(new + step, ops[i + 1 :], family.max_value):
                    new += step
                    break
        out.append(new)
    return out


def _in_range(value: int, ops: Sequence[str], limit: int) -> bool:
    """Whether ``value`` and every value the chain ``ops`` computes from it lie in 0..``limit``."""
    for op in (None, *ops):
        if op is not None:
            value = _apply(value, op)
        if not 0 <= value <= limit:
            return False
    return True


def _apply(value: int, op: str) -> int:
    operand = int(op[1:])
    return value + operand if op[0] == "+" else value - operand if op[0] == "-" else value * operand
