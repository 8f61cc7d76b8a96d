"""The OpenAI-compatible server on loopback, driven by the official ``openai`` client and httpx."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import uvicorn
from pydantic import ValidationError

from tests.test_solver import BEAM2, BON, EIGHT, QUESTIONS, FailsOn, config, forced_policy
from ttc_runtime.cli import main
from ttc_runtime.config import ConfigError
from ttc_runtime.loadtest import free_port, run_load
from ttc_runtime.probes import ProbeLimits, format_probes, run_probes
from ttc_runtime.server import (
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    APIError,
    Batcher,
    ChatRequest,
    ServerConfig,
    create_app,
    listen,
    parse_json,
    uvicorn_config,
)
from ttc_runtime.solver import BadQuery, Query, Solver
from ttc_runtime.strategies import Arm

KEY = "test-key"


class LiveServer:
    """``solver`` served as ``ttc serve`` serves it (the same uvicorn settings and protocol), in a
    thread on a free loopback port."""

    def __init__(self, solver, settings: ServerConfig = ServerConfig()) -> None:
        self.settings = settings.model_copy(update={"port": free_port()})
        self.host, self.port = self.settings.host, self.settings.port
        self.url = f"http://{self.host}:{self.port}"
        app = create_app(solver, self.settings)
        self.server = uvicorn.Server(uvicorn_config(app, self.settings, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def solver(tiny_model_dir, tmp_path_factory):
    arms = [Arm(s, n) for n in (2, 4) for s in (BON, BEAM2)]
    policy = forced_policy(tmp_path_factory.mktemp("server") / "policy", BEAM2, arms)
    return Solver.load(config(tiny_model_dir, policy=policy))


@pytest.fixture(scope="module")
def server(solver):
    settings = ServerConfig(api_key=KEY, max_prompt_tokens=60, max_batch=8, batch_wait_ms=200)
    with LiveServer(solver, settings) as live:
        yield live


def client(server, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def ask(server, question: str, **extra):
    return client(server).chat.completions.create(
        model="ttc-allocator", messages=[{"role": "user", "content": question}], extra_body=extra or None
    )


def test_the_official_client_gets_what_the_solver_returns(server, solver):
    assert [m.id for m in client(server).models.list().data] == ["ttc-allocator"]
    reply = ask(server, QUESTIONS[1], seed=5)
    direct = solver.solve(QUESTIONS[1], seed=5)
    record = reply.model_extra["ttc"]
    assert reply.choices[0].message.content == direct.text
    assert (record["answer"], record["flops"], record["compute"]) == (
        direct.answer,
        direct.flops,
        direct.compute.to_dict(),
    )
    assert (record["strategy"], record["knobs"], record["budget"], record["chosen_by"]) == (
        "beam_search",
        {"beam_width": 2},
        4,
        "allocator",
    )
    assert reply.usage.prompt_tokens == direct.compute.proposer.prompt_tokens
    assert reply.usage.completion_tokens == direct.compute.proposer.generated_tokens

    named = ask(server, QUESTIONS[0], budget=2, strategy="majority")
    assert named.model_extra["ttc"]["chosen_by"] == "request" and named.model_extra["ttc"]["budget"] == 2
    knobs = ask(server, QUESTIONS[0], strategy={"name": "beam_search", "beam_width": 4, "max_rounds": 3}, budget=8)
    assert knobs.model_extra["ttc"]["knobs"] == {"beam_width": 4}


def test_concurrent_requests_are_batched_and_answer_as_alone(server, solver):
    questions = [f"Evaluate left to right:\n{a}+{a}*2" for a in range(1, 9)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda q: ask(server, q), questions))
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["largest_batch"] > 1
    for question, reply in zip(questions, replies):
        direct = solver.solve(question)
        assert reply.model_extra["ttc"]["answer"] == direct.answer
        assert reply.model_extra["ttc"]["compute"] == direct.compute.to_dict()


def test_a_request_that_fails_in_its_batch_fails_alone(tiny_model_dir):
    solver = Solver.load(config(tiny_model_dir))
    solver.generator = FailsOn(solver.generator, "poison")
    batcher = Batcher(solver, max_batch=16, wait_s=0)
    questions = EIGHT[:4] + ["Evaluate left to right:\npoison"] + EIGHT[4:]
    futures = [batcher.submit(solver.check(Query(q, budget=2))) for q in questions]  # queued first: one batch
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="a fault on 'poison'"):
            futures.pop(4).result(timeout=600)
        assert [future.result(timeout=600).question for future in futures] == EIGHT
    finally:
        batcher.stop()
    assert (batcher.batches, batcher.largest, batcher.served) == (1, 9, 8)


def test_bad_requests_get_a_4xx_that_says_what_is_wrong(server):
    url = f"{server.url}/v1/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}"}
    good = {"model": "ttc-allocator", "messages": [{"role": "user", "content": QUESTIONS[0]}]}
    cases = [
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (json.dumps({"model": "ttc-allocator"}).encode(), 400, "messages"),
        (json.dumps({**good, "messages": [{"role": "system", "content": "hi"}]}).encode(), 400, "role 'user'"),
        (json.dumps({**good, "budget": 1000}).encode(), 400, "budget must be an integer from 1 to 8"),
        (json.dumps({**good, "strategy": "beam_serch"}).encode(), 400, "strategy: name"),
        (json.dumps({**good, "strategy": "beam_search", "knobs": {"beam_width": 16}}).encode(), 400, "cannot run"),
        (json.dumps({**good, "knobs": {"beam_width": 2}}).encode(), 400, "without a strategy"),
        (json.dumps({**good, "messages": [{"role": "user", "content": "1+" * 40}]}).encode(), 400, "limit is 60"),
        (json.dumps({**good, "stream": True}).encode(), 400, "streaming"),
        (json.dumps({**good, "model": "gpt-4"}).encode(), 404, "'gpt-4' is not served"),
    ]
    for body, status, message in cases:
        response = httpx.post(url, content=body, headers={**auth, "Content-Type": "application/json"})
        assert response.status_code == status, (body, response.text)
        assert message in response.json()["error"]["message"], (body, response.text)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(url, json=good, headers=headers)
        assert response.status_code == 401 and "bearer token" in response.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        client(server, "wrong").chat.completions.create(model="ttc-allocator", messages=good["messages"])
    with pytest.raises(openai.BadRequestError, match="budget"):
        ask(server, QUESTIONS[0], budget=0)
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    assert ask(server, QUESTIONS[0]).model_extra["ttc"]["chosen_by"] == "allocator"


def test_a_request_over_the_timeout_gets_a_504_and_the_server_keeps_serving(solver):
    with LiveServer(solver, ServerConfig(request_timeout_s=0.001, batch_wait_ms=0)) as live:
        body = {"model": "ttc-allocator", "messages": [{"role": "user", "content": QUESTIONS[0]}], "budget": 8}
        response = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 504 and "request_timeout_s" in response.json()["error"]["message"]
        assert httpx.get(f"{live.url}/health").json()["status"] == "ok"


def test_the_load_script_reports_every_request(server):
    result = run_load(server.url, QUESTIONS * 4, concurrency=4, api_key=KEY)
    assert result.failures == [] and len(result.latencies) == 12 and result.throughput > 0
    assert set(result.strategies) == {"beam_search(M=2)"}
    # Each request's compute comes back with it: the strategy's generations and FLOPs.
    assert len(result.generations) == len(result.flops) == 12
    assert all(g >= 1 for g in result.generations) and all(f > 0 for f in result.flops)


# Hostile and faulty input: every class of malformed request gets a 4xx in OpenAI's shape on a
# connection that stays usable; oversized and slow bodies, full queues, abandoned requests and
# half-open connections are refused or shed.

CHAT = "/v1/chat/completions"


def chat_body(content: str = json.dumps(QUESTIONS[0]), extra: str = "") -> bytes:
    """A chat request's JSON written by hand, so that it can hold what ``json.dumps`` would not."""
    return f'{{"model": "ttc-allocator", "messages": [{{"role": "user", "content": {content}}}]{extra}}}'.encode()


def error_of(data: bytes) -> dict:
    """The error object of an OpenAI-shaped error body (asserting the shape)."""
    error = json.loads(data)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


def test_content_parts_must_be_text_strings():
    def content(value):
        return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": value}]})

    parts = [
        {"type": "text", "text": "1+"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "1"},
    ]
    assert content(parts).messages[0].text() == "1+1"
    assert content("1+1").messages[0].text() == "1+1" and content(None).messages[0].text() == ""
    for value, where, message in [
        ([{"type": "text", "text": 5}], ("messages", 0, "content", 0, "text"), "valid string"),
        ([{"type": "text", "text": [1]}], ("messages", 0, "content", 0, "text"), "valid string"),
        ([{"type": "text", "text": None}], ("messages", 0, "content", 0), "needs a 'text' string"),
        ([{"type": "text"}], ("messages", 0, "content", 0), "needs a 'text' string"),
        (5, ("messages", 0, "content"), "a string, a list of content parts or null"),
    ]:
        with pytest.raises(ValidationError) as caught:
            content(value)
        [error] = caught.value.errors()
        assert error["loc"] == where and message in error["msg"], (value, error)


def test_lone_surrogates_are_refused_and_pairs_accepted():
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"
    for raw in (b'["\\ud800"]', b'{"messages": [{"content": "x\\udfff"}]}', b'{"\\udc00": 1}', b'"\\ude00\\ud83d"'):
        with pytest.raises(APIError, match="lone surrogate") as caught:
            parse_json(raw)
        assert caught.value.status == 400


def test_nesting_is_limited():
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert parse_json(b'{"a": ' * (MAX_JSON_DEPTH - 1) + b"[]" + b"}" * (MAX_JSON_DEPTH - 1))
    too_deep = MAX_JSON_DEPTH + 1
    for raw in (b"[" * too_deep + b"]" * too_deep, b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 10_000):
        with pytest.raises(APIError, match=f"nested more than {MAX_JSON_DEPTH} levels"):
            parse_json(raw)


def test_huge_numbers_are_refused_while_parsing():
    assert parse_json(b"[" + b"9" * MAX_INT_DIGITS + b", -" + b"9" * MAX_INT_DIGITS + b"]")[1] == -int("9" * 20)
    for raw in (b'{"budget": ' + b"9" * 5000 + b"}", b"-" + b"1" * (MAX_INT_DIGITS + 1)):
        with pytest.raises(APIError, match=f"more than {MAX_INT_DIGITS} digits"):
            parse_json(raw)


def test_integers_are_strict_so_true_is_not_a_budget_of_one():
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert ChatRequest.model_validate({**base, "budget": 2, "seed": -1, "n": 1}).budget == 2
    for field, value in [("budget", True), ("budget", "4"), ("budget", 4.0), ("seed", False), ("n", True)]:
        with pytest.raises(ValidationError, match="valid integer"):
            ChatRequest.model_validate({**base, field: value})


class KeptConnection:
    """One keep-alive connection: ``send`` answers the status, the body and whether the
    connection is still the one the request went out on."""

    def __init__(self, live: LiveServer) -> None:
        self.http = http.client.HTTPConnection(live.host, live.port, timeout=60)
        self.http.connect()

    def send(self, method: str, path: str, body: bytes | None = None, token: bytes = f"Bearer {KEY}".encode()):
        sock = self.http.sock
        self.http.request(method, path, body=body, headers={"Authorization": token, "Content-Type": "application/json"})
        response = self.http.getresponse()
        return response.status, response.read(), self.http.sock is sock


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (chat_body('[{"type": "text", "text": 5}]'), "messages.0.content.0.text: Input should be a valid string"),
        (chat_body('[{"type": "text", "text": [1, 2]}]'), "messages.0.content.0.text: Input should be a valid string"),
        (chat_body('[{"type": "text", "text": null}]'), "needs a 'text' string"),
        (chat_body('"\\ud800"'), "lone surrogate \\ud800"),
        (b'{"model": "ttc-allocator", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested more than"),
        (chat_body(extra=', "budget": ' + "9" * 5000), "more than 20 digits"),
        (chat_body(extra=', "budget": true'), "budget: Input should be a valid integer"),
    ],
    ids=["text int", "text list", "text null", "lone surrogate", "nested 10,000 deep", "5,000 digits", "budget true"],
)
def test_each_class_of_malformed_request_gets_a_400_and_the_connection_stays(server, body, message):
    connection = KeptConnection(server)
    status, data, kept = connection.send("POST", CHAT, body)
    assert status == 400 and message in error_of(data)["message"] and kept, data
    status, _, kept = connection.send("GET", "/v1/models")
    assert status == 200 and kept


def test_the_token_is_compared_as_bytes_so_no_token_raises(solver):
    with LiveServer(solver, ServerConfig(api_key="ключ")) as live:
        connection = KeptConnection(live)
        for token in ("Bearer ключ-🔑".encode(), b"Bearer \xff\xfe", "Bearer é".encode("latin-1"), b"Bearer"):
            status, data, kept = connection.send("GET", "/v1/models", token=token)
            assert status == 401 and error_of(data)["type"] == "authentication_error" and kept, token
        status, _, kept = connection.send("GET", "/v1/models", token="Bearer ключ".encode())
        assert status == 200 and kept


def test_unknown_paths_and_methods_get_404_and_405_in_openai_shape(server):
    connection = KeptConnection(server)
    status, data, kept = connection.send("POST", "/v1/completion", chat_body())
    assert status == 404 and kept
    assert error_of(data) == {
        "message": "no such endpoint: POST /v1/completion",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }
    response = httpx.get(f"{server.url}{CHAT}")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert error_of(response.content)["message"] == f"method not allowed: GET {CHAT}"


def test_a_body_over_the_limit_gets_a_413_before_it_is_read(server):
    """The module's server has the default limit, 1 MB. A 50 MB body with a Content-Length is
    refused from its header; a chunked one once the bytes read pass the limit, the rest unread."""
    limit = ServerConfig().max_body_bytes
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    prefix = b'{"model": "ttc-allocator", "messages": [{"role": "user", "content": "'
    huge = prefix + b"1" * 50_000_000 + b'"}]}'
    sent = 0

    def chunks():
        nonlocal sent
        for start in range(0, len(huge), 65536):
            sent += 65536
            yield huge[start : start + 65536]

    for content in (huge, chunks()):
        response = httpx.post(f"{server.url}{CHAT}", content=content, headers=headers, timeout=60)
        assert response.status_code == 413 and response.headers["connection"] == "close"
        assert error_of(response.content) == {
            "message": f"the request body is over max_body_bytes = {limit} bytes",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    assert sent < len(huge)
    at_limit = json.dumps({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}).encode()
    at_limit += b" " * (limit - len(at_limit))
    response = httpx.post(f"{server.url}{CHAT}", content=at_limit, headers=headers)
    assert response.status_code == 404 and "'gpt-4' is not served" in response.text
    response = httpx.post(f"{server.url}{CHAT}", content=at_limit + b" ", headers=headers)
    assert response.status_code == 413
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout, a bound
    far above the server's, fails the test instead of hanging it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_half_open_connections_are_closed_and_slow_bodies_refused(solver):
    with LiveServer(solver, ServerConfig(read_timeout_s=0.5)) as live:
        with socket.create_connection((live.host, live.port), timeout=30) as silent:
            assert read_until_closed(silent) == b""
        with socket.create_connection((live.host, live.port), timeout=0.1) as trickling:
            trickling.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            closed = False
            for _ in range(300):
                try:
                    closed = trickling.recv(1024) == b""
                except TimeoutError:
                    trickling.sendall(b"a")
                if closed:
                    break
            assert closed
        with socket.create_connection((live.host, live.port), timeout=30) as slow:
            slow.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{}}".encode())
            data = read_until_closed(slow)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and "read_timeout_s = 0.5 s" in error_of(body)["message"]
        with socket.create_connection((live.host, live.port), timeout=30) as idle:
            idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /hea")
            assert read_until_closed(idle).startswith(b"HTTP/1.1 200")
        assert httpx.get(f"{live.url}/health").json()["status"] == "ok"


class GatedSolver:
    """The test solver, except that ``solve_each`` (what the batcher calls) records the questions it
    is given and then waits for ``gate``: the test decides when the batcher is busy and when it is
    free."""

    def __init__(self, solver: Solver) -> None:
        self.solver = solver
        self.asked: list[str] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.solver, name)

    def solve_each(self, queries):
        self.asked += [q.question for q in queries]
        self.entered.set()
        assert self.gate.wait(60)
        return self.solver.solve_each(queries)


def health(live: LiveServer) -> dict:
    return httpx.get(f"{live.url}/health").json()


def eventually(condition) -> None:
    """Wait until ``condition()`` holds (polled; 60 s fails the test rather than hanging it)."""
    for _ in range(1200):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("the condition never held")


def post(live: LiveServer, question: str) -> httpx.Response:
    body = {"model": "ttc-allocator", "messages": [{"role": "user", "content": question}]}
    return httpx.post(f"{live.url}{CHAT}", json=body, timeout=120)


def test_a_full_queue_gets_a_503_at_once(solver):
    gated = GatedSolver(solver)
    with LiveServer(gated, ServerConfig(max_queue=1, max_batch=1, batch_wait_ms=0)) as live:
        with ThreadPoolExecutor(2) as pool:
            computing = pool.submit(post, live, QUESTIONS[0])
            assert gated.entered.wait(60)
            queued = pool.submit(post, live, QUESTIONS[1])
            eventually(lambda: health(live)["queued"] == 1)
            refused = post(live, QUESTIONS[2])
            gated.gate.set()
            assert computing.result().status_code == 200 and queued.result().status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    error = error_of(refused.content)
    assert (error["type"], error["code"]) == ("server_error", "queue_full")
    assert "1 requests are waiting (max_queue)" in error["message"]
    assert gated.asked == QUESTIONS[:2]


def test_a_request_whose_client_left_is_never_computed(solver):
    gated = GatedSolver(solver)
    with LiveServer(gated, ServerConfig(max_batch=1, batch_wait_ms=0)) as live:
        with ThreadPoolExecutor(1) as pool:
            computing = pool.submit(post, live, QUESTIONS[0])
            assert gated.entered.wait(60)
            with socket.create_connection((live.host, live.port), timeout=30) as leaving:
                body = chat_body(json.dumps(QUESTIONS[1]))
                leaving.sendall(
                    f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
                )
                eventually(lambda: health(live)["queued"] == 1)
            eventually(lambda: health(live)["dropped"] == 1)
            gated.gate.set()
            assert computing.result().status_code == 200
            assert post(live, QUESTIONS[2]).status_code == 200
        counts = health(live)
    assert gated.asked == [QUESTIONS[0], QUESTIONS[2]]
    assert (counts["served"], counts["dropped"], counts["batches"]) == (2, 1, 2)


def test_the_batcher_skips_cancelled_requests_without_giving_them_a_place():
    """Unit test with a recording stand-in for the solver: two of four queued requests are
    cancelled before the worker starts; the other two make one batch of two."""

    class Recorder:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []

        def solve_each(self, queries):
            self.batches.append([q.question for q in queries])
            return [q.question for q in queries]

    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=2, wait_s=0.0, max_queue=4)
    futures = [batcher.submit(Query(f"q{i}")) for i in range(4)]
    with pytest.raises(queue.Full):
        batcher.submit(Query("q4"))
    assert futures[0].cancel() and futures[1].cancel()
    batcher.start()
    assert [f.result(timeout=60) for f in futures[2:]] == ["q2", "q3"]
    batcher.stop()
    assert recorder.batches == [["q2", "q3"]]


def test_a_port_in_use_is_a_one_line_error_and_exit_status_2(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen(ServerConfig(port=port))
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ttc: error: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1


def test_the_probe_script_gets_every_expected_answer(solver):
    """``ttc loadtest --probes``' probes against a live server; whether each came within its
    expected time depends on the machine and is not asserted here."""
    limits = ProbeLimits(max_body_bytes=100_000, max_queue=2, max_batch=1, read_timeout_s=0.5)
    settings = ServerConfig(
        api_key=KEY, max_body_bytes=100_000, max_queue=2, max_batch=1, read_timeout_s=0.5, batch_wait_ms=0
    )
    with LiveServer(solver, settings) as live:
        results = run_probes(live.url, KEY, limits)
    assert [(r.probe, r.got) for r in results if not r.answered] == []
    table = format_probes(results)
    assert table.startswith("| probe | expected | got | seconds | ok |") and "lone surrogate" in table


class RefusesOn(FailsOn):
    """The wrapped generator, except that a call with a prompt holding ``marker`` refuses the query,
    as a check that only solving can make would."""

    def generate(self, prompts, *args, **kwargs):
        if any(self.marker in prompt for prompt in prompts):
            raise BadQuery(f"cannot solve {self.marker!r}")
        return self.generator.generate(prompts, *args, **kwargs)


def test_a_query_refused_while_solving_gets_a_400_alone(tiny_model_dir):
    solver = Solver.load(config(tiny_model_dir))
    solver.generator = RefusesOn(solver.generator, "poison")
    with LiveServer(solver, ServerConfig(max_batch=8, batch_wait_ms=500)) as live:
        with ThreadPoolExecutor(2) as pool:
            bad = pool.submit(post, live, "Evaluate left to right:\npoison")
            good = pool.submit(post, live, EIGHT[0])
            refused, answered = bad.result(timeout=600), good.result(timeout=600)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_query"
    assert "cannot solve 'poison'" in refused.json()["error"]["message"]
    assert answered.status_code == 200
