import json
import warnings
from pathlib import Path

import pytest

from ttc_runtime.tasks import DataError, DataWarning, MathJsonlConfig, MathJsonlTask, load_math_jsonl

DATA = Path(__file__).parent / "data"


def test_loads_hand_written_file():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # every row has a level: nothing is skipped
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
        ('{"problem": "Q", "answer": "1", "level": "Level 9"}', "'level' must be 1-5 or 'Level N', got 'Level 9'"),
        ('{"problem": "Q", "answer": "1", "level": "hard"}', "'level' must be 1-5 or 'Level N', got 'hard'"),
        ('{"problem": "Q", "answer": "1", "level": 0}', "'level' must be 1-5 or 'Level N', got 0"),
        ('{"problem": "Q", "solution": "no box", "level": "Level ?"}', "no 'answer'"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_records_are_errors(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "Q", "answer": "1", "level": 3}\n' + line + "\n")
    with pytest.raises(DataError, match=f"bad.jsonl:2: .*{message}"):
        load_math_jsonl(path)


def test_rows_with_an_unknown_level_are_skipped_and_counted_once(tmp_path):
    rows = [
        {"problem": "A", "answer": "1", "level": "Level 2"},
        {"problem": "B", "answer": "2", "level": "Level ?"},
        {"problem": "C", "answer": "3", "level": None},
        {"problem": "D", "answer": "4"},
        {"problem": "E", "answer": "5", "level": 5},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.warns(DataWarning) as caught:
        problems = MathJsonlTask(MathJsonlConfig(train=str(path))).problems("train")
    assert [str(w.message) for w in caught] == [
        f"{path}: skipped 3 rows with an unknown level ('Level ?', null or missing), the first at line 2"
    ]
    assert [(p.question, p.level, p.id) for p in problems] == [("A", 2, "train-1"), ("E", 5, "train-5")]


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_math_jsonl(tmp_path / "absent.jsonl")
