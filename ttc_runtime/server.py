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
- ``GET /v1/models``: the one model served. ``GET /health``: liveness, queue depth, batches run,
  requests dropped unanswered.

**Batching.** Requests are checked as they arrive (a bad one is answered at once and never joins a
batch), then queued; one worker thread takes up to ``max_batch`` queued requests, waiting at most
``batch_wait_ms`` for more after the first, and answers them with one ``Solver.solve_batch`` call.
Seeds are per question, so a request's answer is the same whether it was batched or not.

**Under load and hostile input.** The event loop only moves bytes: a request's JSON parsing,
validation and tokenization (the prompt-length checks) run in one of ``CHECK_THREADS`` threads,
so ``/health`` and other requests are answered while a large one is checked. A body over
``max_body_bytes`` is refused with 413 before it is read (from its Content-Length) or as soon as
the bytes read pass the limit (a chunked body), and the connection is closed rather than drained.
At most ``max_queue`` requests wait for a batch; one more is refused with 503 at once, since it
could not be answered in time anyway. A request whose client has gone (closed the connection, or
timed out and left) is dropped before it is computed: the server watches the connection while the
request is queued, and the batcher skips requests cancelled that way or by ``request_timeout_s``.
A client gets ``read_timeout_s`` to send a request's headers (counted from the connection's
opening or from the previous response, and not reset by each byte, so trickling bytes does not
hold a connection) and again to send its body (408). JSON may nest at most ``MAX_JSON_DEPTH``
levels, its integers have at most ``MAX_INT_DIGITS`` digits, and its strings must be Unicode (no
lone UTF-16 surrogates).

**Errors.** Every error is OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400
for malformed JSON, a missing field, a field of the wrong type (a ``budget`` of ``true`` is not 1),
no user message, a budget over the limit, an unknown or unrunnable strategy, a prompt over
``max_prompt_tokens`` or the proposer's context, streaming or ``n`` > 1 (unsupported); 401 for a
missing or wrong bearer token when ``api_key`` is set (``/health`` stays open, and so do FastAPI's
``/docs`` and ``/openapi.json``, which describe the routes and hold no data); 404 for another model
name or an unknown path; 405 for a method a path does not take; 408 for a body slower than
``read_timeout_s``; 413 for a body over ``max_body_bytes``; 503 when the queue is full; 504 when
the answer takes longer than ``request_timeout_s`` (counted from the body's arrival, the wait for a
check thread and for a batch included; a request still queued is dropped, one already running
finishes unseen); 500 only for a fault of the server, its message naming the exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import secrets
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import ConfigError, StrictModel
from .solver import BadQuery, Query, Solution, Solver
from .strategies import StrategyConfig

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have. An OpenAI request needs about 6
(body, messages, a message, its content parts, a part, an image's object); deeper bodies are
refused before validation, whose recursion they could otherwise exhaust."""

MAX_INT_DIGITS = 20
"""Most digits of an integer in a request body: 2**64 has 20, and no field here means anything
larger. Longer numbers are refused while parsing, before Python converts them (quadratic in the
digits)."""

MAX_HEADER_BYTES = 16 * 1024
"""Most bytes of a request line and headers buffered (h11's incomplete-event limit, uvicorn's
default, set here so a uvicorn upgrade cannot change it): larger ones get h11's 400."""

CHECK_THREADS = 2
"""Requests parsed, validated and tokenized at once, in threads of their own off the event loop.
The work is CPU-bound, so more threads would not finish sooner; and each holds the memory of its
tokenization while it runs (about 300 MB for a 1 MB question with the embedded character-level
tokenizer), so a burst of large requests waits for a thread instead of exhausting memory."""

KEEP_ALIVE_S = 5.0
"""How long an idle keep-alive connection with no bytes of a next request is kept, in seconds
(uvicorn's default, set explicitly). ``read_timeout_s`` bounds one that has sent some."""


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
    max_body_bytes: int = Field(
        1_000_000,
        ge=1,
        description="Largest request body, in bytes (1 MB: a question of up to a million characters, far beyond "
        "any proposer's context); a larger one gets 413 before it is read.",
    )
    max_queue: int = Field(
        256,
        ge=1,
        description="Requests waiting for a batch at most; one more gets 503. At the 3.6-20 requests/s measured "
        "on 2 CPU cores (budgets 64 to 4), 256 is 13-70 s of work, well inside request_timeout_s.",
    )
    read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a request's headers, and again its body; a connection that "
        "sends no complete request within it is closed, a body that does not arrive gets 408.",
    )


class APIError(Exception):
    """An error answered in OpenAI's shape, with the response's extra headers (``Connection:
    close`` when the rest of the body is left unread, ``Retry-After`` for a full queue)."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        kind = {
            401: "authentication_error",
            404: "not_found_error",
            500: "server_error",
            503: "server_error",
            504: "timeout_error",
        }
        return {
            "error": {
                "message": self.message,
                "type": kind.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class ContentPart(BaseModel):
    """One part of a message's content list. Text parts make the question; other parts (an image)
    are ignored, as a text-only model has no use for them."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr
    text: StrictStr | None = None

    @model_validator(mode="after")
    def _text_part_has_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a part of type 'text' needs a 'text' string")
        return self


class ChatMessage(BaseModel):
    role: StrictStr
    content: list[ContentPart] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _string_is_one_part(cls, value: Any) -> Any:
        """A string content is one text part, so an error has one path to name (not one per
        member of a union)."""
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if value is not None and not isinstance(value, list):
            raise ValueError("content must be a string, a list of content parts or null")
        return value

    def text(self) -> str:
        return "".join(part.text or "" for part in self.content or [] if part.type == "text")


class ChatRequest(BaseModel):
    """A chat completion request; OpenAI fields this server does not use (temperature, max_tokens,
    ...) are accepted and ignored, since the strategy decides how to sample. Integers are strict:
    ``true`` is not a budget of 1."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    n: StrictInt = 1
    seed: StrictInt | None = None
    budget: StrictInt | None = None
    strategy: StrictStr | dict[str, Any] | None = None
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


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise APIError(400, f"malformed JSON body: a number has more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode()
    except UnicodeEncodeError as error:
        surrogate = f"\\u{ord(text[error.start]):04x}"
        raise APIError(400, f"the JSON body holds a lone surrogate {surrogate}: not Unicode text") from None


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body, or ``APIError`` 400: not UTF-8 or not JSON, nested deeper
    than ``MAX_JSON_DEPTH``, an integer over ``MAX_INT_DIGITS`` digits, or a string (or key) with a
    lone UTF-16 surrogate, which JSON's ``\\ud800`` escapes allow but no text can be encoded with."""
    try:
        value = json.loads(raw, parse_int=_bounded_int)
    except RecursionError:
        raise APIError(400, f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as error:
        raise APIError(400, f"malformed JSON body: {error}") from None
    if isinstance(value, str):
        _check_text(value)
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise APIError(400, f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
        for child in [*item, *item.values()] if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif isinstance(child, str):
                _check_text(child)
    return value


class Batcher:
    """The worker thread that answers queued queries in batches (see the module docstring).

    A request cancelled while queued (its client gone, or past the timeout) is never computed:
    the batcher skips it without letting it take a place in a batch."""

    def __init__(self, solver: Solver, max_batch: int, wait_s: float, max_queue: int = 256) -> None:
        self.solver = solver
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.queue: queue.Queue[tuple[Query, Future] | None] = queue.Queue(max_queue)
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
        """Queue ``query``; ``queue.Full`` when ``max_queue`` requests are already waiting."""
        future: Future = Future()
        self.queue.put_nowait((query, future))
        return future

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[Query, Future]] = []
            deadline = None
            while len(batch) < self.max_batch:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    item = self.queue.get(timeout=timeout)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                if not item[1].set_running_or_notify_cancel():
                    continue
                batch.append(item)
                if deadline is None:
                    deadline = time.monotonic() + self.wait_s
            if batch:
                self._answer(batch)

    def _answer(self, batch: list[tuple[Query, Future]]) -> None:
        """Each request's future gets its solution, or the exception its query alone raised
        (``Solver.solve_each``): one failing request never fails the others of its batch."""
        try:
            outcomes = self.solver.solve_each([q for q, _ in batch])
        except Exception as error:  # noqa: BLE001 - handed to every waiting request, never lost
            for _, future in batch:
                future.set_exception(error)
            return
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                self.served += 1
                future.set_result(outcome)


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


CLIENT_GONE = 499
"""The status logged for a request whose client closed the connection before its answer (nginx's
convention; nobody reads the response)."""


def create_app(solver: Solver, config: ServerConfig = ServerConfig()):
    """The FastAPI application serving ``solver``."""
    batcher = Batcher(solver, config.max_batch, config.batch_wait_ms / 1000, config.max_queue)
    checker = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="ttc-check")
    # Requests whose client left, or whose time ran out, before they were computed.
    counts = {"dropped": 0}
    api_key = None if config.api_key is None else config.api_key.encode()

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        batcher.stop()
        checker.shutdown(cancel_futures=True)

    app = FastAPI(title="ttc-allocator", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, error: APIError):
        return error.response()

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException):
        where = f"{request.method} {request.url.path}"
        message = {404: f"no such endpoint: {where}", 405: f"method not allowed: {where}"}.get(
            error.status_code, str(error.detail)
        )
        return APIError(error.status_code, message, headers=error.headers).response()

    @app.exception_handler(Exception)
    async def _server_error(_request: Request, error: Exception):
        return APIError(500, f"internal error: {type(error).__name__}: {error}").response()

    def authorise(request: Request) -> None:
        if api_key is None:
            return
        # Starlette decodes headers as Latin-1, so encoding back gives the bytes sent; comparing
        # bytes never raises, whatever the client sent, and takes the same time for any mismatch.
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode("latin-1"), api_key):
            raise APIError(401, "missing or wrong bearer token (send 'Authorization: Bearer <key>')")

    async def read_body(request: Request) -> bytes:
        limit = config.max_body_bytes
        too_large = APIError(
            413,
            f"the request body is over max_body_bytes = {limit} bytes",
            code="request_too_large",
            headers={"Connection": "close"},
        )
        length = request.headers.get("content-length")
        if length is not None and int(length) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        return bytes(body)

    def parse(raw: bytes) -> Query:
        payload = parse_json(raw)
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
        return query

    async def client_gone(request: Request) -> None:
        """Return when the client closes the connection (its body is read: nothing else comes)."""
        while (await request.receive())["type"] != "http.disconnect":
            pass

    def timed_out() -> APIError:
        return APIError(504, f"no answer within request_timeout_s = {config.request_timeout_s:g} s")

    async def answer(request: Request, query: Query, timeout: float) -> Solution:
        try:
            future = batcher.submit(query)
        except queue.Full:
            raise APIError(
                503,
                f"the server is busy: {config.max_queue} requests are waiting (max_queue); retry later",
                code="queue_full",
                headers={"Retry-After": "1"},
            ) from None
        solution = asyncio.wrap_future(future)
        gone = asyncio.ensure_future(client_gone(request))
        try:
            done, _ = await asyncio.wait(
                {solution, gone}, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
        if solution in done:
            try:
                return solution.result()
            except BadQuery as error:  # found only while solving, for this request alone
                raise APIError(400, str(error), code="bad_query") from None
        if future.cancel():  # still queued; one being computed finishes unseen
            counts["dropped"] += 1
        solution.cancel()
        if gone in done:
            raise APIError(CLIENT_GONE, "the client closed the connection before the answer")
        raise timed_out()

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "queued": batcher.queue.qsize(),
            "served": batcher.served,
            "dropped": counts["dropped"],
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
        try:
            raw = await asyncio.wait_for(read_body(request), config.read_timeout_s)
        except asyncio.TimeoutError:
            raise APIError(
                408,
                f"the request body did not arrive within read_timeout_s = {config.read_timeout_s:g} s",
                headers={"Connection": "close"},
            ) from None
        except ClientDisconnect:
            raise APIError(CLIENT_GONE, "the client closed the connection while sending the body") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.request_timeout_s
        try:
            query = await asyncio.wait_for(loop.run_in_executor(checker, parse, raw), config.request_timeout_s)
        except asyncio.TimeoutError:
            raise timed_out() from None
        if await request.is_disconnected():
            counts["dropped"] += 1
            raise APIError(CLIENT_GONE, "the client closed the connection before its request was queued")
        return completion_body(await answer(request, query, deadline - loop.time()), config.model_name)

    return app


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers.

    uvicorn's keep-alive timer runs only between a response and the first byte of the next
    request, and never on a new connection, so a client that connects and sends nothing, or sends
    part of a request line and stops, holds the connection forever. Here a timer is armed whenever
    the connection waits for a request (on opening, and when a response is complete) and cancelled
    when the request's headers have arrived; it is not reset by incoming bytes, so trickling bytes
    does not extend it. When it fires the connection is closed without a response (there is no
    request to answer). ``header_timeout_s`` is set by ``protocol_class``."""

    header_timeout_s = 10.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def _waiting_for_request(self) -> bool:
        idle = self.cycle is None or self.cycle.response_complete
        return idle and self.conn.their_state is not h11.ERROR and not self.transport.is_closing()

    def _watch_headers(self) -> None:
        waiting = self._waiting_for_request()
        if waiting and self.header_timer is None:
            self.header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)
        elif not waiting and self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        if self._waiting_for_request():
            self.transport.close()


def protocol_class(header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """``HeaderDeadlineProtocol`` with its deadline set (uvicorn builds protocols from a class)."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})


def uvicorn_config(app, config: ServerConfig, log_level: str = "info") -> uvicorn.Config:
    """uvicorn's settings for ``app``: the h11 protocol with the header deadline (chosen
    explicitly, so installing httptools does not drop it), ``MAX_HEADER_BYTES`` and
    ``KEEP_ALIVE_S``."""
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=protocol_class(config.read_timeout_s),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_keep_alive=KEEP_ALIVE_S,
        log_level=log_level,
    )


def listen(config: ServerConfig) -> socket.socket:
    """A socket bound to ``config.host:config.port`` (uvicorn listens on it), or ``ConfigError`` in
    one line when the address cannot be used (a port in use, a host not of this machine): bound
    before the models load, so a wrong address fails in a second."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {config.host}:{config.port}: {error.strerror or error}") from None
    return sock


def serve(solver: Solver, config: ServerConfig, sock: socket.socket | None = None) -> None:
    """Serve until interrupted, on ``sock`` (from ``listen``) or on a socket bound here."""
    sock = sock or listen(config)
    server = uvicorn.Server(uvicorn_config(create_app(solver, config), config))
    host, port = sock.getsockname()[:2]
    logging.getLogger("uvicorn.error").info("serving on http://%s:%d (press Ctrl+C to quit)", host, port)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then re-raises Ctrl+C's signal
        pass
