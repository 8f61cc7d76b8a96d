"""Fault probes of the server (``ttc loadtest --probes``).

``probe_server`` starts ``ttc serve`` with a small queue and a short
read timeout (``PROBE_SERVER``) and runs ``run_probes`` against it: hostile but fair requests,
each with the answer the server must give. Malformed requests of every class (content parts of the
wrong type, a lone surrogate, JSON nested 10,000 deep, a budget of 5,000 digits or ``true``, a
non-ASCII token, an unknown path or method) on one keep-alive connection, which must survive each;
50 MB bodies with a Content-Length and chunked; questions just under the body limit, alone and
four at once; a body trickled too slowly; connections that send nothing, or headers a byte at a
time; more requests at once than the queue holds; requests whose clients close the connection
right after sending; and finally an ordinary request. Meanwhile ``/health`` is polled every 50 ms
and the server's resident memory read from ``/proc``. A second server on the same port must exit
with status 2 and one line. The table has, per probe, what was expected, what came, and the
seconds it took; "late" marks a right answer outside the expected time.
"""

from __future__ import annotations

import http.client
import json
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from .loadtest import serving


@dataclass
class ProbeResult:
    """One probe: what was sent, the answer it needs, the answer it got, the seconds until that
    answer (or until the server closed the connection), whether the answer was the expected one
    and whether it came within the expected times (kept apart: timing depends on the machine)."""

    probe: str
    expected: str
    got: str
    seconds: float
    answered: bool
    timely: bool = True

    @property
    def ok(self) -> bool:
        return self.answered and self.timely


@dataclass
class ProbeLimits:
    """The server settings the probes' expectations depend on (``ServerConfig``'s names)."""

    max_body_bytes: int
    max_queue: int
    max_batch: int
    read_timeout_s: float


class HealthWatch:
    """Polls ``/health`` every 50 ms from a thread while a probe runs: the slowest answer, the
    polls that failed, and (given the server's pid, on Linux) the peak growth of its resident
    memory over the value when the watch began, in bytes."""

    def __init__(self, base_url: str, pid: int | None = None) -> None:
        self.base_url = base_url
        self.pid = pid
        self.slowest = 0.0
        self.failed = 0
        self.rss_growth: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._start_rss = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _rss(self) -> int | None:
        if self.pid is None:
            return None
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _sample_rss(self) -> None:
        rss = self._rss()
        if rss is not None and self._start_rss is not None:
            self.rss_growth = max(self.rss_growth or 0, rss - self._start_rss)

    def _poll(self) -> None:
        """Poll until stopped, then take a last memory sample (a short probe may end between polls)."""
        with httpx.Client(timeout=10) as client:
            while True:
                started = time.perf_counter()
                try:
                    client.get(f"{self.base_url}/health").raise_for_status()
                except httpx.HTTPError:
                    self.failed += 1
                self.slowest = max(self.slowest, time.perf_counter() - started)
                self._sample_rss()
                if self._stop.wait(0.05):
                    self._sample_rss()
                    return

    def summary(self) -> str:
        text = f"/health slowest {self.slowest:.2f} s" + (f", {self.failed} failed" if self.failed else "")
        if self.rss_growth is not None:
            text += f", RSS +{self.rss_growth / 2**20:.0f} MB"
        return text


def _error_summary(status: int, data: bytes) -> str:
    """``413 request_too_large`` / ``400 invalid_request_error``: the status and the error's code
    (or type), or the status and ``not OpenAI's shape``."""
    try:
        error = json.loads(data)["error"]
        assert {"message", "type", "param", "code"} <= set(error)
    except (ValueError, KeyError, TypeError, AssertionError):
        return f"{status} (not OpenAI's error shape)"
    return f"{status} {error['code'] or error['type']}"


class _KeptConnection:
    """One keep-alive HTTP/1.1 connection (``http.client``), to tell whether an answer kept it."""

    def __init__(self, host: str, port: int) -> None:
        self.http = http.client.HTTPConnection(host, port, timeout=60)

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str | bytes]) -> tuple[str, bool]:
        if self.http.sock is None:
            self.http.connect()
        sock = self.http.sock
        self.http.request(method, path, body=body, headers=headers)
        response = self.http.getresponse()
        summary = _error_summary(response.status, response.read())
        return summary, self.http.sock is sock

    def close(self) -> None:
        self.http.close()


def _malformed(model: str) -> list[tuple[str, str, str, bytes | None, bool, int]]:
    """(probe, method, path, body, with the right token, expected status) for each class of
    malformed request: valid JSON (or HTTP) that must get a 4xx, never a 500."""

    def chat(content: str = '"Evaluate left to right:\\n1+1"', extra: str = "") -> bytes:
        text = f'{{"model": "{model}", "messages": [{{"role": "user", "content": {content}}}]{extra}}}'
        return text.encode()

    deep = b'{"model": "' + model.encode() + b'", "messages": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    return [
        ("content part text: int", "POST", "/v1/chat/completions", chat('[{"type": "text", "text": 5}]'), True, 400),
        ("content part text: list", "POST", "/v1/chat/completions", chat('[{"type": "text", "text": [1]}]'), True, 400),
        (
            "content part text: null",
            "POST",
            "/v1/chat/completions",
            chat('[{"type": "text", "text": null}]'),
            True,
            400,
        ),
        ("lone surrogate in the question", "POST", "/v1/chat/completions", chat('"\\ud800"'), True, 400),
        ("JSON nested 10,000 deep", "POST", "/v1/chat/completions", deep, True, 400),
        ("budget of 5,000 digits", "POST", "/v1/chat/completions", chat(extra=', "budget": ' + "9" * 5000), True, 400),
        ("budget true", "POST", "/v1/chat/completions", chat(extra=', "budget": true'), True, 400),
        ("non-ASCII bearer token", "POST", "/v1/chat/completions", chat(), False, 401),
        ("unknown path", "POST", "/v1/completion", chat(), True, 404),
        ("wrong method", "GET", "/v1/chat/completions", None, True, 405),
    ]


def _probe_malformed(host: str, port: int, api_key: str, model: str) -> list[ProbeResult]:
    results = []
    connection = _KeptConnection(host, port)
    for probe, method, path, body, authorised, status in _malformed(model):
        token = f"Bearer {api_key}" if authorised else "Bearer ключ-🔑"
        headers = {"Authorization": token.encode(), "Content-Type": "application/json"}
        started = time.perf_counter()
        summary, kept = connection.send(method, path, body, headers)
        seconds = time.perf_counter() - started
        got = f"{summary}, connection {'kept' if kept else 'closed'}"
        answered = summary.startswith(str(status)) and "shape" not in summary and kept
        results.append(ProbeResult(probe, f"{status} in OpenAI's shape, connection kept", got, seconds, answered))
    connection.close()
    return results


def _probe_oversized(base_url: str, api_key: str, limits: ProbeLimits, pid: int | None, chunked: bool) -> ProbeResult:
    size = 50_000_000
    body = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"1" * size + b'"}]}'
    content = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    with HealthWatch(base_url, pid) as watch:
        started = time.perf_counter()
        try:
            response = httpx.post(f"{base_url}/v1/chat/completions", content=content, headers=headers, timeout=60)
            summary = _error_summary(response.status_code, response.content)
        except httpx.HTTPError as error:
            summary = f"{type(error).__name__}: {error}"
        seconds = time.perf_counter() - started
    fits = watch.rss_growth is None or watch.rss_growth <= 100 * 2**20
    return ProbeResult(
        f"body 50 MB, {'chunked' if chunked else 'Content-Length'} (limit {limits.max_body_bytes:,} bytes)",
        "413 within 1 s; /health within 1 s; RSS +100 MB at most",
        f"{summary}; {watch.summary()}",
        seconds,
        summary == "413 request_too_large" and fits and not watch.failed,
        seconds < 1.0 and watch.slowest < 1.0,
    )


def _probe_large_questions(
    base_url: str, api_key: str, model: str, limits: ProbeLimits, pid: int | None, count: int
) -> ProbeResult:
    """``count`` questions just under the body limit at once: each read, parsed and tokenized off
    the event loop only to be refused as longer than the context."""
    question = "1+" * ((limits.max_body_bytes - 200) // 2)
    body = {"model": model, "messages": [{"role": "user", "content": question}]}
    headers = {"Authorization": f"Bearer {api_key}"}

    def send(_) -> str:
        response = httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=300)
        return _error_summary(response.status_code, response.content)

    with HealthWatch(base_url, pid) as watch, ThreadPoolExecutor(count) as pool:
        started = time.perf_counter()
        summaries = list(pool.map(send, range(count)))
        seconds = time.perf_counter() - started
    got = ", ".join(f"{summary} x{summaries.count(summary)}" for summary in sorted(set(summaries)))
    return ProbeResult(
        f"{count} question(s) of {len(question):,} characters at once (just under the body limit)",
        "400 bad_query (over the context); /health within 1 s meanwhile",
        f"{got}; {watch.summary()}",
        seconds,
        set(summaries) == {"400 bad_query"} and not watch.failed,
        watch.slowest < 1.0,
    )


def _read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _probe_slow_body(host: str, port: int, base_url: str, api_key: str, limits: ProbeLimits) -> ProbeResult:
    """Headers promising 100 kB, then 100 bytes every 0.2 s: the body cannot arrive in time."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with HealthWatch(base_url) as watch, socket.create_connection((host, port), timeout=0.2) as sock:
        sock.sendall(head.encode())
        started = time.perf_counter()
        deadline = time.monotonic() + limits.read_timeout_s + 10
        while time.monotonic() < deadline and not select.select([sock], [], [], 0.2)[0]:
            try:
                sock.sendall(b" " * 100)
            except OSError:
                break
        data = _read_until_closed(sock, deadline)
        seconds = time.perf_counter() - started
    status_line = data.split(b"\r\n", 1)[0].decode("latin-1") or "no answer"
    _, _, body = data.partition(b"\r\n\r\n")
    summary = _error_summary(int(status_line.split()[1]), body) if status_line.startswith("HTTP/") else status_line
    timely = limits.read_timeout_s - 0.5 < seconds < limits.read_timeout_s + 2
    return ProbeResult(
        "slow body (100 bytes per 0.2 s)",
        f"408 after read_timeout_s ({limits.read_timeout_s:g} s); /health within 1 s meanwhile",
        f"{summary}; {watch.summary()}",
        seconds,
        summary.startswith("408") and not watch.failed,
        timely and watch.slowest < 1.0,
    )


def _probe_half_open(host: str, port: int, limits: ProbeLimits, trickle: bool) -> ProbeResult:
    """A connection that sends nothing, or a header line one byte per 0.25 s, never a request."""
    with socket.create_connection((host, port), timeout=0.25) as sock:
        if trickle:
            sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nX-Slow: ".encode())
        started = time.perf_counter()
        closed = False
        while time.perf_counter() - started < limits.read_timeout_s + 10:
            try:
                if not sock.recv(1024):
                    closed = True
                    break
            except TimeoutError:
                if trickle:
                    try:
                        sock.sendall(b"a")
                    except OSError:
                        closed = True
                        break
            except OSError:
                closed = True
                break
        seconds = time.perf_counter() - started
    timely = limits.read_timeout_s - 0.5 < seconds < limits.read_timeout_s + 2
    return ProbeResult(
        "half-open: headers trickled a byte per 0.25 s" if trickle else "half-open: connect, send nothing",
        f"closed after read_timeout_s ({limits.read_timeout_s:g} s)",
        f"closed after {seconds:.1f} s" if closed else "still open",
        seconds,
        closed,
        timely,
    )


def _raw_chat(host: str, api_key: str, model: str) -> bytes:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Evaluate left to right:\n7+5"}]})
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()


def _status(data: bytes) -> int | None:
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[0].startswith(b"HTTP/") else None


def _probe_overflow(host: str, port: int, api_key: str, model: str, limits: ProbeLimits) -> ProbeResult:
    """More requests at once than the batcher and the queue hold: sockets opened first, then every
    request written in one burst, so they arrive within milliseconds."""
    count = limits.max_queue + limits.max_batch + 16
    sockets = [socket.create_connection((host, port), timeout=0.5) for _ in range(count)]
    request = _raw_chat(host, api_key, model)
    started = time.perf_counter()
    for sock in sockets:
        sock.sendall(request)
    deadline = time.monotonic() + 300
    statuses = []
    for sock in sockets:
        statuses.append(_status(_read_until_closed(sock, deadline)))
        sock.close()
    seconds = time.perf_counter() - started
    counts = {status: statuses.count(status) for status in sorted(set(statuses), key=str)}
    got = ", ".join(f"{status} x{n}" for status, n in counts.items())
    return ProbeResult(
        f"{count} requests at once (max_queue {limits.max_queue}, max_batch {limits.max_batch})",
        "503 queue_full for those beyond the queue, the rest 200",
        got,
        seconds,
        set(counts) == {200, 503},
    )


def _probe_abandoned(host: str, port: int, base_url: str, api_key: str, model: str) -> ProbeResult:
    """Two requests keep the batcher busy; four more are sent whole, their connections closed at
    once. The server's counts must show the four dropped and only the two computed."""
    before = httpx.get(f"{base_url}/health", timeout=10).json()
    request = _raw_chat(host, api_key, model)
    blockers = [socket.create_connection((host, port), timeout=0.5) for _ in range(2)]
    started = time.perf_counter()
    for sock in blockers:
        sock.sendall(request)
    for _ in range(4):
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(request)
    deadline = time.monotonic() + 300
    statuses = [_status(_read_until_closed(sock, deadline)) for sock in blockers]
    for sock in blockers:
        sock.close()
    seconds = time.perf_counter() - started
    after = httpx.get(f"{base_url}/health", timeout=10).json()
    dropped, served = after["dropped"] - before["dropped"], after["served"] - before["served"]
    return ProbeResult(
        "4 requests abandoned behind 2 (client closed after sending)",
        "4 dropped, 2 computed",
        f"{dropped} dropped, {served} computed; the 2 got {statuses}",
        seconds,
        dropped == 4 and served == 2 and statuses == [200, 200],
    )


def run_probes(
    base_url: str, api_key: str, limits: ProbeLimits, model: str = "ttc-allocator", pid: int | None = None
) -> list[ProbeResult]:
    """Every probe against the server at ``base_url`` (loopback; its bearer token ``api_key``,
    its settings ``limits``, its process ``pid`` for memory), then one ordinary request and
    ``/health``: the server must still answer both."""
    host, port = base_url.rsplit("//", 1)[1].rsplit(":", 1)
    port = int(port)
    results = _probe_malformed(host, port, api_key, model)
    results.append(_probe_oversized(base_url, api_key, limits, pid, chunked=False))
    results.append(_probe_oversized(base_url, api_key, limits, pid, chunked=True))
    results.append(_probe_large_questions(base_url, api_key, model, limits, pid, count=1))
    results.append(_probe_large_questions(base_url, api_key, model, limits, pid, count=4))
    results.append(_probe_slow_body(host, port, base_url, api_key, limits))
    results.append(_probe_half_open(host, port, limits, trickle=False))
    results.append(_probe_half_open(host, port, limits, trickle=True))
    results.append(_probe_overflow(host, port, api_key, model, limits))
    results.append(_probe_abandoned(host, port, base_url, api_key, model))
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=0.5) as sock:
        sock.sendall(_raw_chat(host, api_key, model))
        status = _status(_read_until_closed(sock, time.monotonic() + 300))
    health = httpx.get(f"{base_url}/health", timeout=10).status_code
    results.append(
        ProbeResult(
            "afterwards: one request and /health",
            "200 and 200",
            f"{status} and {health}",
            time.perf_counter() - started,
            (status, health) == (200, 200),
        )
    )
    return results


def _probe_port_in_use(serve_args: Sequence[str], port: int) -> ProbeResult:
    command = [sys.executable, "-m", "ttc_runtime.cli", "serve", *serve_args, "--port", str(port)]
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, timeout=300)
    lines = process.stderr.strip().splitlines()
    return ProbeResult(
        "a second server on the same port",
        "exit 2 with a one-line error",
        f"exit {process.returncode}: {lines[-1] if lines else '(no message)'} ({len(lines)} line(s))",
        time.perf_counter() - started,
        process.returncode == 2 and len(lines) == 1,
    )


PROBE_SERVER = ProbeLimits(max_body_bytes=1_000_000, max_queue=4, max_batch=1, read_timeout_s=2.0)
"""The settings ``probe_server`` starts the server with: the default body limit, and a small queue,
one request at a time and a short read timeout so that overflow and timeouts show in seconds."""


def probe_server(serve_args: Sequence[str]) -> list[ProbeResult]:
    """Start ``ttc serve SERVE_ARGS`` with ``PROBE_SERVER``'s settings and a random bearer token
    on a free loopback port, run every probe against it, and try a second server on its port."""
    limits = PROBE_SERVER
    settings = ["--max-body-bytes", str(limits.max_body_bytes), "--max-queue", str(limits.max_queue)]
    settings += ["--max-batch", str(limits.max_batch), "--read-timeout", str(limits.read_timeout_s)]
    settings += ["--batch-wait-ms", "0"]
    api_key = secrets.token_hex(16)
    print("  starting the server for the probes", flush=True)
    with serving([*serve_args, *settings], api_key) as (base_url, process):
        results = run_probes(base_url, api_key, limits, pid=process.pid)
        results.append(_probe_port_in_use(serve_args, int(base_url.rsplit(":", 1)[1])))
    return results


def format_probes(results: Sequence[ProbeResult]) -> str:
    """The probes' table, in Markdown."""
    lines = ["| probe | expected | got | seconds | ok |", "|---|---|---|---|---|"]
    for r in results:
        verdict = "yes" if r.ok else "late" if r.answered else "NO"
        lines.append(f"| {r.probe} | {r.expected} | {r.got} | {r.seconds:.2f} | {verdict} |")
    answered = sum(r.answered for r in results)
    timely = sum(r.ok for r in results)
    lines += ["", f"{answered} of {len(results)} probes answered as expected, {timely} of them in the expected time."]
    return "\n".join(lines)
