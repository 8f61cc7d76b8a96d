"""Writing files whole: a write that fails leaves neither half a file nor its temporary."""

import pytest

from ttc_runtime.files import write_text_atomic


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "answers.jsonl"
    target.mkdir()
    with pytest.raises(IsADirectoryError):
        write_text_atomic(target, "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl"]
    write_text_atomic(tmp_path / "ok.txt", "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl", "ok.txt"]
