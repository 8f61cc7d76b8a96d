"""The family task: chains whose training solutions slip, guess-and-check questions whose training
guesses are uniform, clean held-out references, step checks, and typed questions."""

import re

import numpy as np
import pytest

from ttc_runtime.tasks import LEVELS, ChainFamily, FamilyTask, FamilyTaskConfig, GuessFamily, split_steps
from ttc_runtime.tasks.families import guess_solution, values_of

SMALL = FamilyTaskConfig(train_per_level=2000, validation_per_level=50, test_per_level=100)


@pytest.fixture(scope="module")
def task():
    return FamilyTask(SMALL)


def test_splits_are_seeded_sized_and_disjoint(task):
    assert task.problems("test") == FamilyTask(SMALL).problems("test")
    for split, per_level in (("validation", 50), ("test", 100)):
        problems = task.problems(split)
        assert {lv: sum(p.level == lv for p in problems) for lv in LEVELS} == dict.fromkeys(LEVELS, per_level)
    held_out = [p.question for s in ("validation", "test") for p in task.problems(s)]
    assert len(set(held_out)) == len(held_out)  # the guesses' few hundred questions too
    # Training problems per family: train_per_level times its share (easy and guesses 2, out of
    # reach 1/4).
    counts = {lv: sum(p.level == lv for p in task.problems("train")) for lv in LEVELS}
    assert counts == {1: 4000, 2: 2000, 3: 4000, 4: 2000, 5: 500}
    easy = next(p for p in task.problems("test") if p.level == 1)
    assert re.fullmatch(r"Compute:\n\d[+\-]\d([+\-]\d)? {6,8}", easy.question)
    train = {p.question for p in task.problems("train")}
    assert not train & {p.question for s in ("validation", "test") for p in task.problems(s)}


def test_held_out_references_are_right_and_pass_every_step_check(task):
    for split in ("validation", "test"):
        for problem in task.problems(split):
            assert task.is_correct(problem.solution, problem)
            assert all(task.step_correctness(problem, split_steps(problem.solution)))


def test_chain_demonstrations_slip_at_the_configured_rate_and_go_on_from_the_slip(task):
    family = SMALL.levels[3]
    assert isinstance(family, ChainFamily) and family.slip_rate == 0.35 and family.num_ops == (5, 5)
    assert family.clean_tail == 2
    slips, steps = np.zeros(5), 0
    for problem in (p for p in task.problems("train") if p.level == 4):
        lines = split_steps(problem.solution)[:-1]
        values = [int(re.match(r"\d+", line).group()) for line in lines]
        right = values_of(problem.question)[1:]
        previous = values_of(problem.question)[0]
        ops = re.findall(r"[+\-*]\d+", problem.question.split("\n")[1])
        for i, (value, op) in enumerate(zip(values, ops, strict=True)):
            expected = eval(f"{previous}{op}")  # the step from the previous written value, slip or not
            slips[i] += value != expected
            assert abs(value - expected) <= 1
            previous = value
        steps += 1
        assert task.is_correct(problem.solution, problem) == (values[-1] == right[-1])
    # The first three steps slip at the rate (a slip pushed out of range is not taken), the last two
    # never: they look like the easy chains' steps.
    assert steps == 2000 and all(0.32 < rate < 0.37 for rate in slips[:3] / steps) and slips[3:].sum() == 0


def test_guess_demonstrations_guess_uniformly_and_check_their_guess(task):
    family = SMALL.levels[2]
    assert isinstance(family, GuessFamily) and family.candidates == 3
    problems = [p for p in task.problems("train") if p.level == 3]
    right = []
    for problem in problems:
        low, high, op, target = re.match(r"Find x in (\d+)\.\.(\d+):\nx([+\-*]\d+) = (\d+)$", problem.question).groups()
        low, high, target = int(low), int(high), int(target)
        guess = int(re.match(r"x = (\d+)\n", problem.solution).group(1))
        assert low <= guess <= high == low + 2 and low <= int(problem.answer) <= high
        assert problem.solution == guess_solution(guess, op, target)
        assert all(0 <= eval(f"{g}{op}") <= 19 for g in range(low, high + 1))
        right.append(guess == int(problem.answer))
    assert abs(np.mean(right) - 1 / 3) < 0.03


def test_a_guess_is_checked_in_the_step_after_it():
    assert guess_solution(11, "+5", 17) == "x = 11\n\n11+5 = 16 != 17\n\n\\boxed{11}"
    assert split_steps(guess_solution(13, "*7", 91))[1] == "13*7 = 91 = 91"
    with pytest.raises(ValueError, match="at least candidates"):
        GuessFamily(answer=(2, 9), candidates=3)


def test_step_checks_follow_the_path(task):
    guess = next(p for p in task.problems("test") if p.level == 3)
    wrong = int(guess.answer) + 1
    op, target = re.search(r"x([+\-*]\d+) = (\d+)", guess.question).groups()
    assert task.step_correctness(guess, split_steps(guess_solution(wrong, op, int(target)))) == [False] * 3
    right = split_steps(guess_solution(int(guess.answer), op, int(target)))
    assert task.step_correctness(guess, [right[0], right[1].replace("=", "!=", 2)[:-3], right[2]]) == [
        True,
        False,
        False,
    ]
    chain = next(p for p in task.problems("test") if p.level == 4)
    steps = split_steps(chain.solution)
    slipped = [str(int(re.match(r"\d+", steps[0]).group()) + 1) + steps[0][len(re.match(r"\d+", steps[0]).group()) :]]
    assert task.step_correctness(chain, [*slipped, *steps[1:]]) == [False] * len(steps)
    assert task.step_correctness(chain, [*steps[:2], "9999"]) == [True, True, False]


def test_a_typed_chain_is_asked_as_the_proposer_was_trained(task):
    # The family that draws chains like it gives the header: 1-2 operations on numbers below 10 are
    # easy, longer chains are chains; every line is padded to the longest chain's 5 operations.
    assert task.format_question("3+4") == "Compute:\n3+4" + " " * 8
    assert task.format_question("3+4+1+2") == "Evaluate left to right:\n3+4+1+2" + " " * 4
    assert all(p.question.startswith("Compute:\n") for p in task.problems("test") if p.level == 1)
    formatted = task.format_question("7-3*2+5")
    assert formatted == "Evaluate left to right:\n7-3*2+5" + " " * 4
    assert task.format_question(" 7 - 3*2 + 5 ") == formatted
    problem = task.problems("test")[0]
    assert task.format_question(problem.question) == problem.question
    assert task.format_question("what is 7-3?") == "what is 7-3?"
    too_long = "+".join(["1"] * 9)
    assert task.format_question(too_long) == too_long
