import pytest

from ttc_runtime.prompts import PromptConfig
from ttc_runtime.tasks import (
    STEP_SEPARATOR,
    SyntheticTask,
    SyntheticTaskConfig,
    answers_match,
    extract_boxed,
    normalize_answer,
    split_steps,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{7}", "7"),
        ("no answer here", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("3.0", "3"),
        (" 3 ", "3"),
        ("0.5", "1/2"),
        ("1,024", "1024"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("$5$", "5"),
        ("\\text{east}", "east"),
        ("", None),
        (None, None),
    ],
)
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [
        ("0.5", "\\frac{1}{2}", True),
        ("\\frac12", "\\frac{1}{2}", True),
        ("\\dfrac{1}{2}", "0.5", True),
        ("3", "3.0", True),
        ("1,024", "1024", True),
        ("x^{2}", "x^2", True),
        ("\\sqrt{4}", "2", True),
        ("4", "5", False),
        ("\\frac{1}{3}", "0.5", False),
        (None, "5", False),
        ("", "5", False),
    ],
)
def test_answers_match_hand_checked(predicted, gold, expected):
    assert answers_match(predicted, gold) is expected


def test_split_steps_drops_empty_steps():
    assert split_steps("a=1\n\n\n\nb=2\n\n") == ["a=1", "b=2"]


def test_split_steps_keeps_steps_verbatim_so_prefixes_rebuild_the_text():
    solution = "7*2   \n\n 14\n\n\\boxed{14}"
    assert split_steps(solution) == ["7*2   ", " 14", "\\boxed{14}"]
    assert STEP_SEPARATOR.join(split_steps(solution)) == solution
    task = SyntheticTask(SyntheticTaskConfig(train_per_level=2, validation_per_level=1, test_per_level=1))
    prompt = PromptConfig()
    for problem in task.problems("train"):
        steps = split_steps(problem.solution)
        for k in range(len(steps)):
            assert (prompt.format(problem.question) + problem.solution).startswith(
                prompt.with_steps(problem.question, steps[:k])
            )
