"""Local processes that share one stage's independent work on this machine
(``ExperimentConfig.processes``).

On a few CPU cores, torch's intra-op threads leave much of the cores idle on the tiny models'
small matrices and step-by-step decoding. On a 2-core machine two processes of one thread each,
run side by side, sampled 1.39-1.53x and ran beam search 1.25-1.57x as fast as one process of two
threads (``scripts/bench_processes.py``, two runs).
Training gains nothing that way: two processes training one model together (DDP over gloo, half
the batch each) took 0.45-0.51 s a step against 0.39-0.46 s for one process of two threads, so
only work that splits into independent units (the rollout pools' shards, the PRM labels' shards)
is shared. ``run_in_processes`` starts the processes the way a launcher would (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` for a gloo group) and waits for
them; the stage's code is the one ``ttc pool`` runs under ``torchrun``. The processes end with
their parent (Linux), so a stopped run leaves none behind (``die_with_parent``, which the load
test's server uses too).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable


def local_processes(configured: int) -> int:
    """How many processes to start for a stage that shares its work: ``configured``, or 1 under a
    launcher (``WORLD_SIZE`` set), whose processes share the work instead."""
    return 1 if "WORLD_SIZE" in os.environ else configured


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


PARENT_PID = "TTC_PARENT_PID"
"""Set by a process that starts a helper process (``ttc loadtest``'s server) which should end with it."""


def die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to end this process when its parent ends (``PR_SET_PDEATHSIG``); with ``parent``,
    the pid that started it, exit at once when that parent is already gone (it ended before the
    request was made)."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if parent is not None and os.getppid() != parent:
        raise SystemExit(f"the process that started this one ({parent}) has ended")


def leave_process_group() -> None:
    """Destroy torch.distributed's default process group if this process has one. A process that
    exits with a gloo group alive can abort in its threads' teardown ("terminate called without an
    active exception", exit code -6, once in a launched two-process training whose work was done)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _entry(rank: int, target: Callable, args: tuple, world: int, port: int, threads: int, parent: int) -> None:
    import torch

    die_with_parent(parent)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS=str(threads),
    )
    torch.set_num_threads(threads)
    try:
        target(*args)
    finally:
        leave_process_group()


def run_in_processes(target: Callable, args: tuple, processes: int) -> None:
    """Call ``target(*args)`` in ``processes`` new processes (spawned: ``target`` and ``args`` must
    pickle), each with an equal share of this machine's cores as torch threads, and wait for all of
    them; a process that fails fails the call with its traceback."""
    import torch.multiprocessing as mp

    if processes < 2:
        raise ValueError(f"processes must be at least 2 to share work, got {processes}")
    threads = max(1, cores() // processes)
    mp.start_processes(
        _entry,
        args=(target, args, processes, free_port(), threads, os.getpid()),
        nprocs=processes,
        join=True,
        start_method="spawn",
    )
