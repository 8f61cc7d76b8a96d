"""The OpenAI-compatible server on loopback, driven by the official ``openai`` client and httpx."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import uvicorn

from tests.test_solver import BEAM2, BON, QUESTIONS, config, forced_policy
from ttc_runtime.loadtest import free_port, run_load
from ttc_runtime.server import ServerConfig, create_app
from ttc_runtime.solver import Solver
from ttc_runtime.strategies import Arm

KEY = "test-key"


class LiveServer:
    """uvicorn serving an app in a thread on a free loopback port."""

    def __init__(self, app) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
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
    with LiveServer(create_app(solver, settings)) as live:
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
    with LiveServer(create_app(solver, ServerConfig(request_timeout_s=0.001, batch_wait_ms=0))) as live:
        body = {"model": "ttc-allocator", "messages": [{"role": "user", "content": QUESTIONS[0]}], "budget": 8}
        response = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 504 and "request_timeout_s" in response.json()["error"]["message"]
        assert httpx.get(f"{live.url}/health").json()["status"] == "ok"


def test_the_load_script_reports_every_request(server):
    result = run_load(server.url, QUESTIONS * 4, concurrency=4, api_key=KEY)
    assert result.failures == [] and len(result.latencies) == 12 and result.throughput > 0
    assert set(result.strategies) == {"beam_search(M=2)"}
