import threading

import pytest

from ttc_runtime.prompts import PromptConfig
from ttc_runtime.tasks import (
    STEP_SEPARATOR,
    SyntheticTask,
    SyntheticTaskConfig,
    answers_match,
    extract_boxed,
    group_answers,
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
        ("\\frac12", "1/2"),
        ("\\dfrac{1}{2}", "1/2"),
        ("-\\frac{1}{2}", "-1/2"),
        ("1,024", "1024"),
        ("1,\\!000", "1000"),
        ("10{,}000", "10000"),
        ("376, 625", "376, 625"),
        ("1,2,3", "1, 2, 3"),
        ("\\left( 1,2 \\right)", "(1, 2)"),
        ("x^{2}", "x^2"),
        ("x^{10}", "x^{10}"),
        ("{3}", "3"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("\\frac{\\sqrt3}2", "\\frac{\\sqrt{3}}{2}"),
        ("\\pi r^2", "\\pi r^2"),
        ("\\rightarrow", "\\rightarrow"),
        ("90^\\circ", "90"),
        ("10\\%", "10"),
        ("\\$18.90", "189/10"),
        ("$5$", "5"),
        ("\\text{east}", "east"),
        ("\\text{(A)}", "(A)"),
        ("", None),
        (None, None),
    ],
)
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected
    assert normalize_answer(expected) == expected


# (predicted, gold, verdict), each verdict checked by hand. Where math-verify alone gets a pair
# wrong, the canonical forms or the shape rule decide it: it reads 1\,000 and the thousands inside
# a list or tuple as separate numbers, cannot read \frac\pi2, and calls a tuple or an interval
# equal to a set or list of the same values in any order, (1, 2) and 2, 1 included; it also calls
# 1, 1 equal to 1.
HAND_CHECKED = [
    # thousands separators
    ("1,000", "1000", True),
    ("1,\\!000", "1000", True),
    ("10{,}000", "10000", True),
    ("12,345,678", "12345678", True),
    ("1,024", "1024", True),
    ("1{,}024", "1,024", True),
    ("1\\,000", "1000", True),
    ("1,000.5", "1000.5", True),
    ("\\$1,000", "1000", True),
    ("1,000", "1,000,000", False),
    ("1,0000", "10000", False),
    ("1,00", "100", False),
    ("0,5", "0.5", False),
    # lists
    ("376, 625", "376625", False),
    ("376625", "376, 625", False),
    ("1, 100", "1100", False),
    ("3, 125", "3125", False),
    ("100, 200", "100200", False),
    ("1, 2", "12", False),
    ("1,2,3", "123", False),
    ("376, 625", "376, 625", True),
    ("1, 2, 3", "1,2,3", True),
    ("3, 1, 2", "1, 2, 3", True),
    ("-2, 2", "2, -2", True),
    ("\\frac{1}{2}, 3", "0.5, 3", True),
    ("1,000, 2,000", "1000, 2000", True),
    ("1, 2", "1, 2, 3", False),
    ("1, 3", "1, 2", False),
    # intervals
    ("(1, 2)", "(1,2)", True),
    ("[1, 2)", "[1,2)", True),
    ("[1,2)", "(1,2)", False),
    ("[1, 2]", "[1, 2)", False),
    ("(1, 2)", "(1, 2]", False),
    ("(-\\infty, 3]", "(-\\infty,3]", True),
    ("(-\\infty, 3)", "(-\\infty, 3]", False),
    ("\\left(-\\infty, \\frac{1}{2}\\right)", "(-\\infty, 0.5)", True),
    ("(-\\infty, 0) \\cup (1, \\infty)", "(-\\infty,0)\\cup(1,\\infty)", True),
    ("(1, \\infty) \\cup (-\\infty, 0)", "(-\\infty,0)\\cup(1,\\infty)", True),
    ("(-\\infty, 0) \\cup (1, \\infty)", "(-\\infty, 0] \\cup (1, \\infty)", False),
    ("(-\\infty, \\infty)", "\\mathbb{R}", True),
    ("[2, 5]", "2, 5", False),
    ("[2, 5]", "\\{2, 5\\}", False),
    # tuples
    ("(3, -4)", "(3,-4)", True),
    ("(-4, 3)", "(3,-4)", False),
    ("(1, 2)", "(2, 1)", False),
    ("(1, 2, 3)", "(1,2,3)", True),
    ("(1, 2, 3)", "(3, 2, 1)", False),
    ("(1, 2, 3)", "(1, 2)", False),
    ("(\\frac{1}{2}, 3)", "(0.5, 3)", True),
    ("(1,000, 2)", "(1000, 2)", True),
    ("(376, 625)", "376625", False),
    ("(1, 2)", "2, 1", False),
    ("(2, 1)", "1, 2", False),
    ("(1, 2, 3)", "3, 2, 1", False),
    ("(1, 2)", "1, 2", False),
    # sets
    ("\\{1, 2\\}", "\\{2, 1\\}", True),
    ("\\{1, 2\\}", "\\{1, 2, 3\\}", False),
    ("\\{1, 2\\}", "2, 1", True),
    ("\\{1, 2\\}", "(1, 2)", False),
    ("(3, 2, 1)", "\\{1, 2, 3\\}", False),
    ("(1, 2, 3)", "\\{1, 2, 3\\}", False),
    # numbers and expressions
    ("0.5", "\\frac{1}{2}", True),
    ("\\frac12", "\\frac{1}{2}", True),
    ("\\dfrac{1}{2}", "0.5", True),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True),
    ("3", "3.0", True),
    ("x^{2}", "x^2", True),
    ("{3}", "3", True),
    ("\\sqrt{4}", "2", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\frac{\\sqrt3}2", "\\frac{\\sqrt{3}}{2}", True),
    ("\\frac\\pi2", "\\frac{\\pi}{2}", True),
    ("\\pi r^2", "r^2\\pi", True),
    ("x+1", "1+x", True),
    ("90^\\circ", "90", True),
    ("10\\%", "10", True),
    ("\\$18.90", "18.90", True),
    ("\\text{(A)}", "\\text{(B)}", False),
    ("4", "5", False),
    ("\\frac{1}{3}", "0.5", False),
    ("2x", "x", False),
    (None, "5", False),
    ("", "5", False),
    ("1, 1", "1", False),
]


@pytest.mark.parametrize(("predicted", "gold", "expected"), HAND_CHECKED)
def test_answers_match_hand_checked(predicted, gold, expected):
    assert answers_match(predicted, gold) is expected


@pytest.mark.parametrize(("predicted", "gold", "expected"), HAND_CHECKED)
def test_canonical_forms_grade_as_the_answers_do(predicted, gold, expected):
    """Candidates carry canonical answers (``Task.extract_answer``), which are graded in turn."""
    canonical = normalize_answer(predicted)
    assert normalize_answer(canonical) == canonical
    assert answers_match(canonical, gold) is expected
    assert answers_match(normalize_answer(predicted), normalize_answer(gold) or gold) is expected


def test_group_answers_merges_what_math_verify_calls_equal():
    answers = ["0.5", "1", "\\frac12", None, "\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", "\\sqrt{4}", "2", "x^{2}"]
    answers += ["x \\cdot x", "2, 1", "\\{1, 2\\}", "(1, 2)", "376, 625", "376625", "376,625", ""]
    assert group_answers(answers) == [
        "0.5",
        "1",
        "0.5",
        None,
        "\\frac{1}{\\sqrt{2}}",
        "\\frac{1}{\\sqrt{2}}",
        "\\sqrt{4}",
        "\\sqrt{4}",
        "x^{2}",
        "x^{2}",
        "2, 1",
        "2, 1",
        "(1, 2)",
        "376, 625",
        "376625",
        "376625",
        None,
    ]


def test_group_answers_needs_both_verdicts():
    """math-verify calls a prediction 2x+z=1 equal to a gold 1 (it keeps the right-hand side), not
    the reverse: grouping keeps them apart, so the order of candidates does not decide."""
    assert answers_match("2x+z=1", "1") and not answers_match("1", "2x+z=1")
    assert group_answers(["1", "2x+z=1"]) == ["1", "2x+z=1"]
    assert group_answers(["2x+z=1", "1"]) == ["2x+z=1", "1"]


def test_group_answers_of_integers_never_call_math_verify(monkeypatch):
    from ttc_runtime.tasks import grading

    def refuse(*args):
        raise AssertionError("math-verify was asked about plain integers")

    monkeypatch.setattr(grading, "_parsed", refuse)
    monkeypatch.setattr(grading, "_verifies", refuse)
    answers = [str(i % 1024) for i in range(2048)] + ["3.0", "-0", "1,000"]
    grouped = group_answers(answers)
    assert grouped[:2048] == answers[:2048]
    assert grouped[2048:] == ["3", "0", "1000"]


def test_grading_and_grouping_work_in_a_server_thread():
    """math-verify's time limit uses SIGALRM, which only the main thread may set: elsewhere the
    grader runs without it rather than failing (these strings are met nowhere else, so nothing is
    cached)."""
    results = {}

    def grade():
        results["match"] = answers_match("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}")
        results["groups"] = group_answers(["\\frac{2}{\\sqrt{5}}", "\\frac{2\\sqrt{5}}{5}", "\\sqrt{5}"])

    thread = threading.Thread(target=grade)
    thread.start()
    thread.join()
    assert results == {
        "match": True,
        "groups": ["\\frac{2}{\\sqrt{5}}", "\\frac{2}{\\sqrt{5}}", "\\sqrt{5}"],
    }


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
