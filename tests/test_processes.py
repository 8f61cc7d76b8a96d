"""Local processes that share a stage's work (``ttc_runtime.processes``): none under a launcher,
the launcher's variables and the share of the cores each process gets, a failing process failing
the call."""

from __future__ import annotations

import os

import pytest
from torch.multiprocessing import ProcessRaisedException

from ttc_runtime.processes import local_processes, run_in_processes


def test_under_a_launcher_no_processes_are_started(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert local_processes(2) == 2
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert local_processes(2) == 1


def _write_environment(directory: str) -> None:
    import torch

    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "OMP_NUM_THREADS")
    line = " ".join(os.environ[key] for key in keys) + f" {torch.get_num_threads()}"
    with open(os.path.join(directory, os.environ["RANK"]), "w") as out:
        out.write(line)


def _fail_on_rank_one() -> None:
    if os.environ["RANK"] == "1":
        raise ValueError("rank 1 failed")


def test_each_process_gets_its_rank_and_a_share_of_the_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    run_in_processes(_write_environment, (str(tmp_path),), 2)
    assert (tmp_path / "0").read_text() == "0 0 2 127.0.0.1 2 2"
    assert (tmp_path / "1").read_text() == "1 1 2 127.0.0.1 2 2"


def test_a_failing_process_fails_the_call_with_its_error():
    with pytest.raises(ProcessRaisedException, match="rank 1 failed"):
        run_in_processes(_fail_on_rank_one, (), 2)
    with pytest.raises(ValueError, match="at least 2"):
        run_in_processes(_fail_on_rank_one, (), 1)
