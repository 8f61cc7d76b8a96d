"""An OpenAI-compatible HTTP server over a ``Solver`` (FastAPI, served by uvicorn).

Endpoints:

- ``POST /v1/chat/completions``: the last user message is the question. The allocator picks the
  strategy unless the request names one. Fields beyond OpenAI's (the client's ``extra_body``):
  ``budget`` (generations), ``strategy`` (a name, or an object with the name and its knobs, e.g.
  ``{"name": "beam_search", "beam_width": 4}``), ``knobs`` (knobs for a strategy given by name);
  OpenAI's ``seed`` is the solver's seed. The reply's message is the chosen solution (its last
  ``\\boxed{}`` holds the answer), ``usage`` counts the proposer's prompt and generated tokens, and
  the extra field ``ttc`` carries the answer, the strategy, its knobs and budget, who chose it, the
  FLOPs and the full compute record (``Solution.to_dict``).
- ``GET /v1/models``: the one model served. ``GET /health``: liveness, queue depth, batches run.

**Batching.** Requests are checked as they arrive (a bad one is answered at once and never joins a
batch), then queued; one worker thread takes up to ``max_batch`` queued requests, waiting at most
``batch_wait_ms`` for more after the first, and answers them with one ``Solver.solve_batch`` call.
Seeds are per question, so a request's answer is the same whether it was batched or not.

**Limits and errors.** Every error is OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``: 400 for malformed JSON, a missing field or user message, a budget over the limit, an
unknown or unrunnable strategy, a prompt over ``max_prompt_tokens`` or the proposer's context,
streaming or ``n`` > 1 (unsupported); 401 for a missing or wrong bearer token when ``api_key`` is
set (``/health`` stays open); 404 for another model name; 504 when the answer takes longer than
``request_timeout_s`` (a request still queued is dropped; one already running finishes unseen).
"""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import threading
import time
import uuid
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import StrictModel
from .solver import BadQuery, Query, Solution, Solver
from .strategies import StrategyConfig


class ServerConfig(StrictModel):
    """Where the server listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model_name: str = Field("ttc-allocator", description="The model id clients send and /v1/models lists.")
    api_key: str | None = Field(None, description="Bearer token every request but /health must carry; None: open.")
    max_prompt_tokens: int | None = Field(
        None, ge=1, description="Longest question prompt accepted, in proposer tokens; None: what the context allows."
    )
    request_timeout_s: float = Field(600.0, gt=0, description="Longest wait for an answer, queueing included.")
    max_batch: int = Field(16, ge=1, description="Requests answered together; 1 serves them one at a time.")
    batch_wait_ms: float = Field(10.0, ge=0, description="How long the first queued request waits for others.")


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        kind = {401: "authentication_error", 404: "not_found_error", 504: "timeout_error"}
        return {
            "error": {
                "message": self.message,
                "type": kind.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """A chat completion request; OpenAI fields this server does not use (temperature, max_tokens,
    ...) are accepted and ignored, since the strategy decides how to sample."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    n: int = 1
    seed: int | None = None
    budget: int | None = None
    strategy: str | dict[str, Any] | None = None
    knobs: dict[str, Any] | None = None

    def query(self) -> Query:
        users = [m for m in self.messages if m.role == "user"]
        if not users:
            raise APIError(400, "messages: no message with role 'user' (its content is the question)", "messages")
        if self.stream:
            raise APIError(400, "streaming is not supported: send stream=false", "stream")
        if self.n != 1:
            raise APIError(400, f"n must be 1 (one answer per request), got {self.n}", "n")
        return Query(users[-1].text(), self.budget, self._strategy(), self.seed)

    def _strategy(self) -> StrategyConfig | None:
        if self.strategy is None:
            if self.knobs:
                raise APIError(400, "knobs: given without a strategy", "knobs")
            return None
        if isinstance(self.strategy, dict) and self.knobs:
            raise APIError(400, "knobs: give the knobs inside the strategy object, or the strategy by name", "knobs")
        fields = {"name": self.strategy, **(self.knobs or {})} if isinstance(self.strategy, str) else self.strategy
        try:
            return StrategyConfig.model_validate_json(json.dumps(fields))
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'strategy'}: {e['msg']}" for e in error.errors())
            raise APIError(400, f"strategy: {problems}", "strategy") from None


class Batcher:
    """The worker thread that answers queued queries in batches (see the module docstring)."""

    def __init__(self, solver: Solver, max_batch: int, wait_s: float) -> None:
        self.solver = solver
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.queue: queue.Queue[tuple[Query, Future] | None] = queue.Queue()
        self.batches = 0
        self.largest = 0
        self.served = 0
        self.thread = threading.Thread(target=self._loop, name="ttc-batcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def submit(self, query: Query) -> Future:
        future: Future = Future()
        self.queue.put((query, future))
        return future

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.wait_s
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            live = [(q, f) for q, f in batch if f.set_running_or_notify_cancel()]
            if live:
                self._answer(live)
            if stopping:
                return

    def _answer(self, batch: list[tuple[Query, Future]]) -> None:
        try:
            solutions = self.solver.solve_batch([q for q, _ in batch])
        except Exception as error:  # noqa: BLE001 - handed to every waiting request, never lost
            for _, future in batch:
                future.set_exception(error)
            return
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        self.served += len(batch)
        for (_, future), solution in zip(batch, solutions, strict=True):
            future.set_result(solution)


def completion_body(solution: Solution, model: str) -> dict[str, Any]:
    """The chat completion a solution is answered with."""
    proposer = solution.compute.proposer
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": solution.text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": proposer.prompt_tokens,
            "completion_tokens": proposer.generated_tokens,
            "total_tokens": proposer.tokens,
        },
        "ttc": solution.to_dict(),
    }


def create_app(solver: Solver, config: ServerConfig = ServerConfig()):
    """The FastAPI application serving ``solver``."""
    batcher = Batcher(solver, config.max_batch, config.batch_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="ttc-allocator", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, error: APIError):
        return JSONResponse(error.body(), status_code=error.status)

    def authorise(request: Request) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), config.api_key):
            raise APIError(401, "missing or wrong bearer token (send 'Authorization: Bearer <key>')")

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "queued": batcher.queue.qsize(),
            "served": batcher.served,
            "batches": batcher.batches,
            "largest_batch": batcher.largest,
        }

    @app.get("/v1/models")
    async def models(request: Request):
        authorise(request)
        return {
            "object": "list",
            "data": [{"id": config.model_name, "object": "model", "created": 0, "owned_by": "ttc-allocator"}],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        authorise(request)
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(400, f"malformed JSON body: {error}") from None
        if not isinstance(payload, dict):
            raise APIError(400, f"the body must be a JSON object, got {type(payload).__name__}")
        try:
            body = ChatRequest.model_validate(payload)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(map(str, first["loc"]))
            raise APIError(400, f"{where}: {first['msg']}", where) from None
        if body.model != config.model_name:
            raise APIError(
                404, f"model {body.model!r} is not served; this server serves {config.model_name!r}", "model"
            )
        try:
            query = solver.check(body.query())
            if config.max_prompt_tokens is not None:
                tokens = solver.prompt_tokens(query.question)
                if tokens > config.max_prompt_tokens:
                    raise BadQuery(f"the question's prompt is {tokens} tokens; the limit is {config.max_prompt_tokens}")
        except BadQuery as error:
            raise APIError(400, str(error), code="bad_query") from None
        future = batcher.submit(query)
        try:
            solution = await asyncio.wait_for(asyncio.wrap_future(future), config.request_timeout_s)
        except asyncio.TimeoutError:
            future.cancel()
            raise APIError(504, f"no answer within request_timeout_s = {config.request_timeout_s:g} s") from None
        return completion_body(solution, config.model_name)

    return app


def serve(solver: Solver, config: ServerConfig) -> None:
    """Serve until interrupted."""
    uvicorn.run(create_app(solver, config), host=config.host, port=config.port, log_level="info")
