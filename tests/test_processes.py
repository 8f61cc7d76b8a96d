"""Local processes that share a stage's work (``ttc_runtime.processes``): none under a launcher,
the launcher's variables and the share of the cores each process gets, a failing process failing
the call; a helper process ending with the process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch.multiprocessing import ProcessRaisedException

from ttc_runtime.processes import PARENT_PID, local_processes, run_in_processes


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


def _state(pid: int) -> str:
    """The process's state letter from /proc ("" once it is gone; "Z" while nobody has reaped it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_helper_process_ends_with_the_process_that_started_it():
    """What ``ttc loadtest`` does for its server: a helper given ``PARENT_PID`` ends when the process
    that started it is killed, and one whose starter is already gone does not start at all."""
    helper = (
        "import os, time; from ttc_runtime.processes import PARENT_PID, die_with_parent; "
        "die_with_parent(int(os.environ[PARENT_PID])); print(os.getpid(), flush=True); time.sleep(120)"
    )
    starter = (
        "import os, subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {helper!r}], env={{**os.environ, {PARENT_PID!r}: str(os.getpid())}}); "
        "time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    helper_pid = int(parent.stdout.readline())
    assert _state(helper_pid) not in ("", "Z")
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while _state(helper_pid) not in ("", "Z") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state(helper_pid) in ("", "Z"), "the helper outlived the process that started it"

    orphan = subprocess.run(
        [sys.executable, "-c", helper],
        env={**os.environ, PARENT_PID: "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert orphan.returncode != 0 and "the process that started this one (1) has ended" in orphan.stderr
