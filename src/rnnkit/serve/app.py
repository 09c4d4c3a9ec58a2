"""The HTTP API of a trained language model: a FastAPI app built by :func:`create_app`.

    POST /generate   {"prime": "ROMEO:", "length": 200, "temperature": 0.8, "top_k": 0,
                      "top_p": 1.0, "seed": 7, "stop": ["\\n\\n"], "unknown": "error",
                      "stream": false}
                     -> {"text": "...", "finish_reason": "length" | "stop", "seed": 7,
                         "chars": 200}
                     with "stream": true: text/event-stream, events ``text`` ({"text": piece},
                     pieces join to the text) then ``done`` ({"finish_reason", "seed", "chars"})
                     or ``error`` ({"error": "..."})
    GET  /health     -> {"status": "ok", "running": 1, "waiting": 0}
    GET  /model      -> cell, layers, hidden, embed, vocab size and kind, parameters, run, device,
                        limits

Every field of a request is optional. Without ``seed`` the server draws one and returns it, so
any answer can be reproduced: generation uses a private ``torch.Generator`` per request, so a
seeded request gives the same text alone or among many concurrent ones.

Errors, always JSON ``{"error": "one line"}``: 400 the body is not a JSON object; 404 / 405
unknown path or method (FastAPI's /docs, /redoc and /openapi.json too, unless ``docs``); 413
body larger than ``Limits.max_body`` (``body.py``: refused from its Content-Length, or while
reading, before it is parsed; 400 for a body framed by both Content-Length and
Transfer-Encoding); 422 a field is invalid (wrong type, out of range, over a limit, unknown
field, prime characters outside the vocabulary); 429 every worker busy and the queue full (with
``Retry-After: 1``); 500 the model failed (e.g. non-finite logits).

Concurrency: generation is blocking torch code, run in a pool of ``max_concurrent`` worker
threads; up to ``queue`` more requests wait for a worker (first come, first served), the next
one is refused at once with 429. The model sits on one device (``rnnkit serve --device``) and
every request generates there. On CUDA the workers queue their steps on the device's default
stream, so up to ``max_concurrent`` generations interleave on the GPU, each with its own
generator on the device: a seeded answer does not depend on the others. A streamed answer
sends what was generated every ``STREAM_INTERVAL``, not an event per token. A streaming client
that disconnects stops its generation at the next piece and frees its worker. What is not
here: the request body, its limits and its 4xx messages (``request.py``); the body limit
(``body.py``); connections and their limits (``connections.py``); the command line and the
socket (``command.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from rnnkit import __version__
from rnnkit.devices import describe_device, model_device
from rnnkit.errors import UserError
from rnnkit.generation import generate
from rnnkit.serve.body import BodyLimit
from rnnkit.serve.request import MAX_STOP, MAX_STOP_CHARS, ApiError, GenerateRequest, Limits, parse

__all__ = ["Limits", "create_app"]
STREAM_INTERVAL = 0.005  # s between streamed events: each carries the text of that time
log = logging.getLogger("rnnkit.serve")


class _Disconnected(Exception):
    """Raised in the worker (from ``on_text``) when the streaming client has gone."""


class Workers:
    """The worker threads and the admission count: at most ``max_concurrent`` generations run
    and ``queue`` wait; ``submit`` raises the 429 beyond that. A slot is freed when its
    future is done -- finished, failed, or cancelled before it started."""

    def __init__(self, model, vocab, limits: Limits, threads: int) -> None:
        self.model, self.vocab, self.limits = model, vocab, limits
        self.pool = ThreadPoolExecutor(
            limits.max_concurrent,
            thread_name_prefix="rnnkit-generate",
            initializer=torch.set_num_threads,  # in each worker: OpenMP settings may be per thread
            initargs=(threads,),
        )
        self.lock = threading.Lock()
        self.admitted = 0  # running + waiting
        self.running = 0

    def submit(self, settings: dict, on_text=None) -> Future:
        """Run ``generate(**settings)`` in a worker, or ApiError 429 when all slots are taken."""
        with self.lock:
            if self.admitted >= self.limits.max_concurrent + self.limits.queue:
                raise ApiError(
                    429,
                    f"busy: {self.limits.max_concurrent} generations running and "
                    f"{self.limits.queue} waiting (the server's --max-concurrent and --queue); "
                    "retry later",
                    headers={"Retry-After": "1"},
                )
            self.admitted += 1
        future = self.pool.submit(self._run, settings, on_text)
        future.add_done_callback(self._release)
        return future

    def counts(self) -> dict:
        with self.lock:
            return {"running": self.running, "waiting": self.admitted - self.running}

    def _run(self, settings: dict, on_text) -> tuple[str, str]:
        """The text and its finish reason ("stop" or "length")."""
        with self.lock:
            self.running += 1
        try:
            reasons: list[str] = []
            text = generate(
                self.model, self.vocab, on_text=on_text, finish_reasons=reasons, **settings
            )[0]
            return text, reasons[0]
        finally:
            with self.lock:
                self.running -= 1

    def _release(self, _: Future) -> None:
        with self.lock:
            self.admitted -= 1


def create_app(model, vocab, config, limits: Limits | None = None, *, threads: int = 1,
               source: str | None = None, docs: bool = False) -> FastAPI:  # fmt: skip
    """The app serving ``model`` (a :class:`rnnkit.models.LanguageModel` in eval mode) with
    ``vocab`` and its ``config`` (a :class:`rnnkit.config.RunConfig`). ``threads``: torch
    intra-op threads of each worker; ``source``: the checkpoint path shown by GET /model;
    ``docs``: serve FastAPI's /docs, /redoc and /openapi.json (else they are 404 too)."""
    limits = limits or Limits()
    workers = Workers(model, vocab, limits, threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        workers.pool.shutdown(wait=False, cancel_futures=True)

    paths = {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json"}
    app = FastAPI(title="rnnkit", version=__version__, lifespan=lifespan,
                  **{name: path if docs else None for name, path in paths.items()})  # fmt: skip
    app.add_middleware(BodyLimit, max_bytes=limits.max_body)
    _add_error_handlers(app)
    m = config.model
    shown_limits = {**asdict(limits), "max_body": limits.max_body, "max_stop": MAX_STOP,
                    "max_stop_chars": MAX_STOP_CHARS, "threads": threads}  # fmt: skip
    about = {"cell": m.cell, "layers": m.layers, "hidden": m.hidden,
             "hidden_sizes": m.layer_sizes(), "embed": m.embed,
             "vocab_size": len(vocab), "vocab_kind": vocab.kind,
             "parameters": sum(p.numel() for p in model.parameters()), "run": source,
             "device": describe_device(model_device(model)),
             "rnnkit": __version__, "limits": shown_limits}  # fmt: skip

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **workers.counts()}

    @app.get("/model")
    async def model_info() -> dict:
        return about

    schema = {"content": {"application/json": {"schema": GenerateRequest.model_json_schema()}}}

    @app.post("/generate", openapi_extra={"requestBody": schema})
    async def generate_text(http: Request):
        request, settings = parse(await http.body(), vocab, limits)
        if request.stream:
            return _stream(workers, settings)
        future = workers.submit(settings)
        try:
            text, reason = await asyncio.wrap_future(future)
        except UserError as error:  # the model, not the request: e.g. non-finite logits
            raise ApiError(500, str(error)) from None
        return _summary(text, reason, settings)

    return app


def _summary(text: str, reason: str, settings: dict) -> dict:
    """The final fields of an answer; ``reason`` is generate's: "stop" when a stop string
    ended it, else "length" (told by the sampler: re-encoding the text would miscount a BPE
    model's tokens, which need not be the tokenizer's own split of that text)."""
    return {"text": text, "finish_reason": reason, "seed": settings["seed"],
            "chars": len(text)}  # fmt: skip


def _event(name: str, data: dict) -> str:
    """One server-sent event; ``json.dumps`` escapes newlines, so data is one line."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _stream(workers: Workers, settings: dict) -> StreamingResponse:
    """Server-sent events. The worker's ``on_text`` appends each final piece to a list (atomic
    under the GIL: no lock, no wake-up of the event loop per token); every ``STREAM_INTERVAL``
    the event generator sends what arrived since its last event as one ``text`` event. However
    the response ends, ``stop`` tells the worker to stop (``on_text`` raises) or cancels it if
    it has not started."""
    pieces: list[str] = []
    gone = threading.Event()

    def on_text(piece: str) -> None:
        if gone.is_set():
            raise _Disconnected
        pieces.append(piece)

    future = workers.submit(settings, on_text)  # 429 before the 200 of the stream

    def stop() -> None:
        gone.set()
        future.cancel()

    async def events():
        sent, finished = 0, False
        while not finished:
            finished = future.done()  # before reading: a done future has put every piece
            now = len(pieces)
            if now > sent:
                text, sent = "".join(pieces[sent:now]), now
                yield _event("text", {"text": text})
            if not finished:
                await asyncio.sleep(STREAM_INTERVAL)
        try:
            summary = _summary(*future.result(), settings)
            yield _event("done", {k: v for k, v in summary.items() if k != "text"})
        except UserError as error:
            yield _event("error", {"error": str(error)})
        except Exception:
            log.exception("generation failed")
            yield _event("error", {"error": "internal server error"})

    return _EventStream(events(), stop)


class _EventStream(StreamingResponse):
    """A text/event-stream response that calls ``stop`` however it ends: sent in full, failed,
    or cancelled by Starlette when the client goes -- maybe while the event generator waits at
    a ``yield``, where its own ``finally`` would run only once it is garbage-collected."""

    def __init__(self, events, stop) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self.stop = stop

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stop()


# ---- errors: one JSON shape ---------------------------------------------------------------------


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, error: ApiError):
        return _error(error.status, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def crash(request, error: Exception):
        log.exception("unhandled error")
        return _error(500, f"internal server error ({type(error).__name__})")
