"""The console: library bars hidden for a block and restored, lines from the first process only."""

import datasets
from transformers.utils import logging as transformers_logging

from ttc_runtime.console import first_process, library_bars_hidden, say


def test_library_bars_are_hidden_inside_the_block_and_restored_after(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    datasets.enable_progress_bars()
    transformers_logging.enable_progress_bar()
    with library_bars_hidden():
        assert datasets.are_progress_bars_disabled() and not transformers_logging.is_progress_bar_enabled()
    assert not datasets.are_progress_bars_disabled() and transformers_logging.is_progress_bar_enabled()


def test_only_the_first_process_says_anything(monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    assert first_process()
    say("from the first")
    monkeypatch.setenv("RANK", "1")
    assert not first_process()
    say("from another")
    assert capsys.readouterr().out == "from the first\n"
