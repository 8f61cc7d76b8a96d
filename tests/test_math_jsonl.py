from pathlib import Path

import pytest

from ttc_runtime.tasks import DataError, MathJsonlConfig, MathJsonlTask, load_math_jsonl

DATA = Path(__file__).parent / "data"


def test_loads_hand_written_file():
    problems = load_math_jsonl(DATA / "math_small.jsonl")
    assert [p.level for p in problems] == [1, 2, 5]
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "1024", "3"]
    assert problems[0].id == "test/prealgebra/1.json"
    assert problems[1].id == "math_small-2"


def test_grades_with_math_verify():
    task = MathJsonlTask(MathJsonlConfig(test=str(DATA / "math_small.jsonl")))
    half, power, root = task.problems("test")
    assert task.is_correct("so the answer is \\boxed{0.5}", half)
    assert task.is_correct("\\boxed{\\dfrac{1}{2}}", half)
    assert not task.is_correct("\\boxed{\\frac{1}{4}}", half)
    assert task.is_correct("\\boxed{1024}", power)
    assert task.is_correct(root.solution, root)
    assert task.problems("train") == []


def test_malformed_line_names_its_number():
    with pytest.raises(DataError, match=r"math_bad.jsonl:2: malformed JSON"):
        load_math_jsonl(DATA / "math_bad.jsonl")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"problem": "", "solution": "\\\\boxed{1}", "level": 1}', "missing or empty 'problem'"),
        ('{"problem": "Q", "solution": "no box", "level": 1}', "no 'answer'"),
        ('{"problem": "Q", "answer": "1", "level": "Level ?"}', "'level' must be 1-5"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_records_are_errors(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "Q", "answer": "1", "level": 3}\n' + line + "\n")
    with pytest.raises(DataError, match=f"bad.jsonl:2: .*{message}"):
        load_math_jsonl(path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_math_jsonl(tmp_path / "absent.jsonl")
