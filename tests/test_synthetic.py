import pytest

from ttc_runtime.tasks import LEVELS, SyntheticTask, SyntheticTaskConfig, split_steps

SMALL = SyntheticTaskConfig(train_per_level=300, validation_per_level=50, test_per_level=100)


@pytest.fixture(scope="module")
def task():
    return SyntheticTask(SMALL)


def test_same_seed_same_problems(task):
    again = SyntheticTask(SMALL)
    assert task.problems("test") == again.problems("test")
    assert task.problems("train") == again.problems("train")


def test_other_seed_other_problems(task):
    other = SyntheticTask(SMALL.model_copy(update={"seed": 1}))
    assert [p.question for p in other.problems("test")] != [p.question for p in task.problems("test")]


def test_split_sizes_and_levels(task):
    for split, per_level in (("train", 300), ("validation", 50), ("test", 100)):
        problems = task.problems(split)
        assert len(problems) == 5 * per_level
        assert {lv: sum(p.level == lv for p in problems) for lv in LEVELS} == dict.fromkeys(LEVELS, per_level)


def test_no_held_out_question_in_training(task):
    train = {p.question for p in task.problems("train")}
    held_out = {p.question for s in ("validation", "test") for p in task.problems(s)}
    assert not train & held_out


def test_reference_solutions_grade_correct_and_steps_check(task):
    for problem in task.problems("test"):
        assert task.is_correct(problem.solution, problem)
        steps = split_steps(problem.solution)
        assert task.step_correctness(problem, steps) == [True] * len(steps)
        assert problem.solution.endswith(f"\\boxed{{{problem.answer}}}")


def test_harder_levels_have_longer_chains(task):
    mean_steps = []
    for level in LEVELS:
        problems = [p for p in task.problems("test") if p.level == level]
        mean_steps.append(sum(len(split_steps(p.solution)) for p in problems) / len(problems))
    assert mean_steps == sorted(mean_steps) and mean_steps[0] < mean_steps[-1]


def test_hand_checked_problem_arithmetic(task):
    problem = next(p for p in task.problems("test") if p.level == 5)
    expression = problem.question.splitlines()[1].strip()
    value, number, op = None, "", None
    for char in expression + "+":
        if char.isdigit():
            number += char
            continue
        operand = int(number)
        value = operand if value is None else {"+": value + operand, "-": value - operand, "*": value * operand}[op]
        op, number = char, ""
    assert str(value) == problem.answer


def test_step_correctness_flags_first_wrong_step_and_everything_after(task):
    problem = next(p for p in task.problems("test") if len(split_steps(p.solution)) >= 3)
    steps = split_steps(problem.solution)
    wrong = ["999" + steps[0], *steps[1:]]
    assert task.step_correctness(problem, wrong) == [False] * len(steps)
    late = [*steps[:-2], "1+1", steps[-1]]
    assert task.step_correctness(problem, late) == [True] * (len(steps) - 2) + [False, False]
    assert task.step_correctness(problem, [*steps, "extra"])[-1] is False


def test_wrong_answer_is_incorrect(task):
    problem = task.problems("test")[0]
    assert not task.is_correct(f"\\boxed{{{int(problem.answer) + 1}}}", problem)
    assert not task.is_correct("no boxed answer", problem)


def test_unknown_split_is_an_error(task):
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        task.problems("dev")
