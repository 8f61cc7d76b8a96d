"""A bounded load test of the server with the official ``openai`` client.

``run_load`` sends a fixed list of questions with at most ``concurrency`` requests in flight and
records, per request, the status, the latency, the answer and the server's ``ttc`` record.
``benchmark_server`` (``ttc loadtest``) starts ``ttc serve`` as a child process once per batch
size (16 and 1 by default: batched, then one at a time), runs the same load against each, checks
that the server still answers ``/health`` afterwards, and reports throughput, failures, accuracy
against the gold answers, whether every run gave the same answers (batching must not change
them), the mean generations, FLOPs (decision included) and latency per request, and the
allocator's decision time against the strategies' time (per request: the wall time of the
decision and of the strategy call it was part of). Ratios come from runs in the same invocation
on the same machine, so they compare like with like.

A question sent with several seeds (``ttc loadtest --seeds S``) is answered S times with the
solver's randomness drawn anew, so its accuracy is an expected rate rather than one run's luck;
``paired_accuracy`` compares two such runs question by question (``--against``), each question the
mean over its seeds, with a paired bootstrap interval over the questions.

The fault probes of ``ttc loadtest --probes`` are in ``probes``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from .processes import PARENT_PID, free_port

if TYPE_CHECKING:
    from .evaluation.efficiency import Interval


@dataclass
class LoadResult:
    """What one load run measured."""

    requests: int
    seconds: float
    failures: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    decision_ms: list[float] = field(default_factory=list)
    strategy_ms: list[float] = field(default_factory=list)
    strategies: list[str] = field(default_factory=list)
    generations: list[int] = field(default_factory=list)
    flops: list[int] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Answered requests per second of wall time."""
        return (self.requests - len(self.failures)) / self.seconds


async def _load(
    base_url: str,
    questions: Sequence[str],
    seeds: Sequence[int] | None,
    concurrency: int,
    budget: int | None,
    api_key: str,
    model: str,
) -> LoadResult:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, timeout=3600)
    gate = asyncio.Semaphore(concurrency)
    result = LoadResult(len(questions), 0.0, answers=[None] * len(questions))

    async def one(i: int, question: str) -> None:
        extra = {} if budget is None else {"budget": budget}
        async with gate:
            started = time.perf_counter()
            try:
                reply = await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": question}],
                    seed=None if seeds is None else seeds[i],
                    extra_body=extra,
                )
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                result.failures.append(f"request {i}: {type(error).__name__}: {error}")
                return
            record = reply.model_extra["ttc"]
            result.latencies.append(time.perf_counter() - started)
            result.answers[i] = record["answer"]
            result.decision_ms.append(record["decision_ms"])
            result.strategy_ms.append(record["strategy_ms"])
            result.strategies.append(record["label"])
            result.generations.append(record["compute"]["generations"])
            result.flops.append(record["flops"])

    started = time.perf_counter()
    await asyncio.gather(*(one(i, q) for i, q in enumerate(questions)))
    result.seconds = time.perf_counter() - started
    await client.close()
    return result


def run_load(
    base_url: str,
    questions: Sequence[str],
    concurrency: int = 16,
    budget: int | None = None,
    api_key: str = "none",
    model: str = "ttc-allocator",
    seeds: Sequence[int] | None = None,
) -> LoadResult:
    """Send every question once, at most ``concurrency`` at a time (see the module docstring),
    question ``i`` with seed ``seeds[i]`` (the server's default seed where ``seeds`` is None)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if seeds is not None and len(seeds) != len(questions):
        raise ValueError(f"{len(seeds)} seeds for {len(questions)} questions: give one seed per question")
    return asyncio.run(_load(base_url, questions, seeds, concurrency, budget, api_key, model))


def wait_healthy(base_url: str, process: subprocess.Popen | None = None, timeout: float = 300.0) -> dict:
    """Poll ``/health`` until it answers (or the server process exits, or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before it was ready")
        try:
            return httpx.get(f"{base_url}/health", timeout=5).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise TimeoutError(f"{base_url}/health did not answer within {timeout:g} s")


@contextmanager
def serving(serve_args: Sequence[str], api_key: str = "") -> Iterator[tuple[str, subprocess.Popen]]:
    """``ttc serve SERVE_ARGS`` in a child process on a free loopback port with bearer token
    ``api_key`` ("": none), ready: yields its URL and process, and stops it on leaving (and the
    server ends with this process when it is killed, ``PARENT_PID``). Its log
    goes to a temporary file, since a pipe nobody reads would fill up with access lines and stall
    the server; when the server exits before it is ready, the error ends with the log's last lines."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "ttc_runtime.cli", "serve", *serve_args, "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        env = {**os.environ, "TTC_API_KEY": api_key, PARENT_PID: str(os.getpid())}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            try:
                wait_healthy(base_url, process)
            except RuntimeError as error:
                log.seek(0)
                tail = "\n".join(log.read().decode(errors="replace").splitlines()[-5:])
                raise RuntimeError(f"{error}:\n{tail}") from None
            yield base_url, process
        finally:
            process.terminate()
            process.wait(timeout=60)


@dataclass
class ServerRun:
    """One batch size's load run and the server's own counts after it."""

    max_batch: int
    load: LoadResult
    health: dict


def benchmark_server(
    serve_args: Sequence[str],
    questions: Sequence[str],
    concurrency: int,
    budget: int | None,
    batch_sizes: Sequence[int],
    seeds: Sequence[int] | None = None,
) -> list[ServerRun]:
    """Run the load (``questions`` with their ``seeds``) against ``ttc serve SERVE_ARGS --max-batch
    B`` for every ``B``."""
    runs = []
    for max_batch in batch_sizes:
        print(f"  starting the server with max_batch {max_batch}", flush=True)
        with serving([*serve_args, "--max-batch", str(max_batch)]) as (base_url, process):
            load = run_load(base_url, questions, concurrency, budget, seeds=seeds)
            health = wait_healthy(base_url, process, timeout=30)
        print(f"  {len(questions)} requests in {load.seconds:.1f} s, {len(load.failures)} failed", flush=True)
        runs.append(ServerRun(max_batch, load, health))
    return runs


def answer_rows(
    runs: Sequence[ServerRun], questions: Sequence[str], gold: Sequence[str], seeds: Sequence[int]
) -> list[dict]:
    """One row per run and request: the question, its seed, the answer and whether it matches
    ``gold`` (a failed request's is None, wrong), so that two servers compare question by question."""
    from .tasks.grading import answers_match

    return [
        {"max_batch": run.max_batch, "index": i, "question": q, "seed": s, "gold": g, "answer": a, "correct": ok}
        for run in runs
        for i, (q, s, g, a) in enumerate(zip(questions, seeds, gold, run.load.answers))
        for ok in [a is not None and answers_match(a, g)]
    ]


def question_accuracy(rows: Sequence[dict]) -> dict[str, float]:
    """Each question's share of right answers over its seeds, in the rows of the first batch size
    (every batch size answers alike)."""
    if not rows:
        raise ValueError("no answer rows to compare")
    first = rows[0]["max_batch"]
    right: dict[str, list[bool]] = {}
    for row in rows:
        if row["max_batch"] == first:
            right.setdefault(row["question"], []).append(bool(row["correct"]))
    return {question: sum(values) / len(values) for question, values in right.items()}


def paired_accuracy(rows: Sequence[dict], against: Sequence[dict], resamples: int = 1000, seed: int = 0) -> Interval:
    """Accuracy of ``rows`` minus that of ``against`` (answer rows of two load runs on the same
    questions), each question the mean over its seeds, with the median and 90% interval of
    ``resamples`` paired bootstrap resamples of the questions."""
    import numpy as np

    from .evaluation.efficiency import Interval, bootstrap_weights

    ours, theirs = question_accuracy(rows), question_accuracy(against)
    if ours.keys() != theirs.keys():
        missing = sorted(ours.keys() ^ theirs.keys())
        raise ValueError(
            f"the two runs answered different questions ({len(missing)} in only one, e.g. {missing[0]!r}): "
            "compare runs with the same --requests"
        )
    difference = np.array([ours[q] - theirs[q] for q in ours])
    weights = bootstrap_weights(len(difference), resamples, seed)
    return Interval.of((weights @ difference).tolist())


def format_benchmark(runs: Sequence[ServerRun], gold: Sequence[str], concurrency: int) -> str:
    """The load test's table, in Markdown."""
    from .tasks.grading import answers_match

    lines = [
        "| max batch | requests | concurrency | failed | seconds | requests/s | accuracy | same answers as "
        "the first run | generations / request | FLOPs / request | latency s | mean batch | largest batch "
        "| decision ms | strategy ms | decision / strategy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        load = run.load
        right = sum(a is not None and answers_match(a, g) for a, g in zip(load.answers, gold))
        same = sum(a == b for a, b in zip(load.answers, runs[0].load.answers))
        decision = sum(load.decision_ms) / max(1, len(load.decision_ms))
        strategy = sum(load.strategy_ms) / max(1, len(load.strategy_ms))
        health = run.health
        lines.append(
            f"| {run.max_batch} | {load.requests} | {concurrency} | {len(load.failures)} | {load.seconds:.1f} "
            f"| {load.throughput:.2f} | {right / load.requests:.3f} | {same}/{load.requests} "
            f"| {_mean(load.generations):.2f} | {_mean(load.flops):.3g} | {_mean(load.latencies):.2f} "
            f"| {health['served'] / max(1, health['batches']):.1f} | {health['largest_batch']} "
            f"| {decision:.2f} | {strategy:.0f} | {decision / strategy if strategy else 0:.2%} |"
        )
    if len(runs) >= 2 and runs[-1].load.throughput > 0:
        ratio = runs[0].load.throughput / runs[-1].load.throughput
        lines.append("")
        lines.append(
            f"Throughput with max batch {runs[0].max_batch} is {ratio:.2f}x that with max batch {runs[-1].max_batch}."
        )
    for run in runs:
        for failure in run.load.failures[:5]:
            lines.append(f"- max batch {run.max_batch}: {failure}")
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
