"""The family task: chains whose training solutions slip, guess-and-check questions whose training
guesses are uniform, clean held-out references, step checks, and typed questions."""

import re

import numpy as np
import pytest

from ttc_runtime.tasks import LEVELS, ChainFamily, FamilyTask, FamilyTaskConfig, GuessFamily, split_steps
from ttc_runtime.tasks.grading import STEP_SEPARATOR
from ttc_runtime.tasks.families import CHECK_LINE_BREAK, guess_solution, values_of

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
    assert re.fullmatch(r"Compute:\n\d[+\-]\d[+\-]\d {10}", easy.question)
    train = {p.question for p in task.problems("train")}
    assert not train & {p.question for s in ("validation", "test") for p in task.problems(s)}


def test_held_out_references_are_right_and_pass_every_step_check(task):
    for split in ("validation", "test"):
        for problem in task.problems(split):
            assert task.is_correct(problem.solution, problem)
            assert all(task.step_correctness(problem, split_steps(problem.solution)))


def test_chain_demonstrations_slip_at_the_configured_rate_and_go_on_from_the_slip(task):
    family = SMALL.levels[3]
    assert isinstance(family, ChainFamily) and family.slip_rate == 0.5 and family.num_ops == (5, 5)
    assert family.clean_tail == 1
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
    # The first four steps slip at the rate (a slip pushed out of range is not taken), the last
    # never.
    assert steps == 2000 and all(0.46 < rate < 0.52 for rate in slips[:4] / steps) and slips[4:].sum() == 0


def test_guess_demonstrations_guess_uniformly_and_check_their_guess(task):
    family = SMALL.levels[2]
    assert isinstance(family, GuessFamily) and (family.candidates, family.spacing, family.offset) == (3, 2, 4)
    problems = [p for p in task.problems("train") if p.level == 3]
    right, orders = [], set()
    for problem in problems:
        *listed, op, target = re.match(
            r"Find x in (\d+), (\d+), (\d+):\nx([+\-]\d+) = (\d+)$", problem.question
        ).groups()
        listed, target = [int(v) for v in listed], int(target)
        low = min(listed)
        assert sorted(listed) == [low, low + 2, low + 4] and 1 <= low and low + 4 <= 9
        orders.add(tuple(np.argsort(listed)))
        guess = int(re.match(r"x = (\d+)\n", problem.solution).group(1))
        assert guess in listed and int(problem.answer) in listed and eval(f"{problem.answer}{op}") == target
        assert problem.solution == guess_solution(guess, op, target, 4, task.width)
        right.append(guess == int(problem.answer))
    assert abs(np.mean(right) - 1 / 3) < 0.03 and len(orders) == 6


def test_a_guess_is_checked_by_a_chain_that_ends_at_the_offset_when_it_is_right():
    # Undo the operation on the target, add the offset, subtract the guess: 11-6 = 5 is x, and
    # 5+4-7 = 2 is not 4, so 7 is wrong; the check names the x it found. The check, its verdict and
    # its x are one step; its lines are padded like a chain's (5 operations wide) and joined by as
    # many tokens as a step boundary. The solution boxes its guess.
    assert split_steps(guess_solution(7, "+6", 11, 4, 5)) == [
        "x = 7",
        "11-6+4-7" + " " * 4 + " \n" + "5+4-7" + " " * 6 + " \n" + "9-7" + " " * 8 + " \n" + "2 != 4 \nso x = 5",
        "\\boxed{7}",
    ]
    assert split_steps(guess_solution(5, "-2", 3, 4, 5))[1].split(" \n") == [
        "3+2+4-5    ",
        "5+4-5      ",
        "9-5        ",
        "4 == 4",
        "so x = 5",
    ]
    assert len(CHECK_LINE_BREAK) == len(STEP_SEPARATOR)
    with pytest.raises(ValueError, match="must exceed"):
        GuessFamily(max_candidate=4, candidates=3)


def test_step_checks_follow_the_path(task):
    guess = next(p for p in task.problems("test") if p.level == 3)
    wrong = int(guess.answer) + 1
    op, target = re.search(r"x([+\-*]\d+) = (\d+)", guess.question).groups()
    steps = split_steps(guess_solution(wrong, op, int(target), 4, task.width))
    assert task.step_correctness(guess, steps) == [False] * 3
    right = split_steps(guess_solution(int(guess.answer), op, int(target), 4, task.width))
    assert task.step_correctness(guess, right) == [True] * 3
    lines = right[1].split(CHECK_LINE_BREAK)
    wrong_line = re.sub(r"^\d+", lambda m: str(int(m.group()) + 1), lines[1])
    slipped = CHECK_LINE_BREAK.join([lines[0], wrong_line, *lines[2:]])
    assert task.step_correctness(guess, [right[0], slipped, right[2]]) == [True, False, False]
    chain = next(p for p in task.problems("test") if p.level == 4)
    steps = split_steps(chain.solution)
    slipped = [str(int(re.match(r"\d+", steps[0]).group()) + 1) + steps[0][len(re.match(r"\d+", steps[0]).group()) :]]
    assert task.step_correctness(chain, [*slipped, *steps[1:]]) == [False] * len(steps)
    assert task.step_correctness(chain, [*steps[:2], "9999"]) == [True, True, False]


def test_a_typed_chain_is_asked_as_the_proposer_was_trained(task):
    # The family that draws chains like it gives the header: 2 operations on numbers below 10 are
    # easy, and so is one (the shortest family it fits); three operations, which no family has, are
    # asked as the shortest family they fit, the long chains; every line is padded to the longest
    # chain's 7 operations.
    assert task.format_question("3+4") == "Compute:\n3+4" + " " * 12
    assert task.format_question("3+4+1+2") == "Evaluate left to right:\n3+4+1+2" + " " * 8
    assert all(p.question.startswith("Compute:\n") for p in task.problems("test") if p.level == 1)
    formatted = task.format_question("7-3*2+5")
    assert formatted == "Evaluate left to right:\n7-3*2+5" + " " * 8
    assert task.format_question(" 7 - 3*2 + 5 ") == formatted
    problem = task.problems("test")[0]
    assert task.format_question(problem.question) == problem.question
    # Typed under a family's header without the padding: that header, padded.
    assert task.format_question("Compute:\n2+3+4") == "Compute:\n2+3+4" + " " * 10
    assert task.format_question("Evaluate left to right:\n3+4") == "Evaluate left to right:\n3+4" + " " * 12
    assert task.format_question("Sum:\n2+3") == "Sum:\n2+3"
    assert task.format_question("what is 7-3?") == "what is 7-3?"
    too_long = "+".join(["1"] * 9)
    assert task.format_question(too_long) == too_long


def test_design_pass_at_1_is_the_chance_a_slipped_chain_still_ends_right():
    task = FamilyTask()
    assert task.design_pass_at_1(3, 0.8) == pytest.approx(1 / 3)
    assert task.design_pass_at_1(1, 0.8) is None and task.design_pass_at_1(5, 0.8) is None
    # Five steps that may slip (0.45 in the data, 0.40 at temperature 0.8): right when the slips
    # cancel or none happens.
    assert task.design_pass_at_1(2, 0.8) == pytest.approx(0.26, abs=0.02)
    assert task.design_pass_at_1(2, 0.0) == 1.0
    # Four steps that may slip at 0.46 each: clean (0.54)^4 = 0.09 of the time, right far more often.
    assert 0.2 < task.design_pass_at_1(4, 0.8) < 0.32
    # By hand: two + and - steps on values far from the range's ends, each slipping at 0.5 (at
    # temperature 1 the data's own rate): right when neither slips (1/4) or one goes up and the
    # other down (2 x 1/4 x 1/4): 0.375.
    wide = ChainFamily(num_ops=(2, 2), max_start=50, max_operand=9, max_multiplier=0, max_value=999, slip_rate=0.5)
    levels = list(FamilyTaskConfig().levels)
    levels[1] = wide
    assert FamilyTask(FamilyTaskConfig(levels=levels)).design_pass_at_1(2, 1.0) == pytest.approx(0.375, abs=0.015)
