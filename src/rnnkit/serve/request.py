"""What a client may ask of ``rnnkit serve``: the body of POST /generate (:class:`GenerateRequest`),
the server's :class:`Limits`, and :func:`parse`, which turns a body into the keyword arguments
of :func:`rnnkit.generation.generate` or an :class:`ApiError` with a one-line message (400 not a
JSON object, 422 a field invalid or over a limit).

What is not here: the app, its workers and its answers (``app.py``), the command line
(``command.py``).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rnnkit.errors import UserError

MAX_STOP = 4  # stop strings per request
MAX_STOP_CHARS = 64  # characters per stop string
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, how many run at once and how many connections are open,
    for how long (``rnnkit serve`` flags)."""

    max_length: int = 2000  # characters (tokens) generated per request
    max_prime: int = 4000  # characters of prime
    max_concurrent: int = 2  # generations running at once: worker threads
    queue: int = 16  # requests waiting for a worker before 429
    max_connections: int = 1000  # open connections (connections.py)
    request_timeout: float = 10.0  # seconds to send a whole request (head and body)
    keep_alive: float = 5.0  # seconds an idle connection stays open between requests

    @property
    def max_body(self) -> int:
        """Bytes of request body: the fields plus a prime of ``max_prime`` characters, each
        possibly JSON-escaped as a surrogate pair (12 bytes)."""
        return 16384 + 12 * self.max_prime


Stop = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]


class GenerateRequest(BaseModel):
    """The body of POST /generate. Types are strict: ``"5"`` or ``5.0`` is not a length."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prime: str = ""
    length: Annotated[int, Field(ge=1)] = 200
    temperature: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.8
    top_k: Annotated[int, Field(ge=0)] = 0
    top_p: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    stop: Annotated[list[Stop], Field(max_length=MAX_STOP)] = []
    unknown: Literal["error", "skip"] = "error"
    stream: bool = False

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value):
        """``"stop": "\\n"`` is ``"stop": ["\\n"]``."""
        return [value] if isinstance(value, str) else value


class ApiError(Exception):
    """An answer other than 200: ``status`` and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def parse(body: bytes, vocab, limits: Limits) -> tuple[GenerateRequest, dict]:
    """The request in ``body`` (JSON whatever its Content-Type says; empty: every default) and
    the keyword arguments of ``generate`` for it, ``seed`` drawn when the request has none."""
    try:
        request = GenerateRequest.model_validate_json(body or b"{}")
    except ValidationError as error:
        raise ApiError(*_validation_message(error.errors())) from None
    if request.length > limits.max_length:
        raise ApiError(422, f"length: at most {limits.max_length} (the server's --max-length), "
                            f"got {request.length}")  # fmt: skip
    if len(request.prime) > limits.max_prime:
        raise ApiError(422, f"prime: at most {limits.max_prime} characters (the server's "
                            f"--max-prime), got {len(request.prime)}")  # fmt: skip
    try:  # here, not in the worker: a 422 (before a stream's 200), not the model's 500
        vocab.encode(request.prime, unknown=request.unknown)  # cheap: vectorised
    except UserError as error:
        message = str(error).replace("--unknown skip", '"unknown": "skip"')
        raise ApiError(422, f"prime: {message}") from None
    seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
    return request, {**request.model_dump(exclude={"seed", "stream"}), "seed": seed}


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _validation_message(errors: list[dict]) -> tuple[int, str]:
    """400 when the body is not a JSON object, else 422 naming each bad field (at most 3).
    Whatever the client sent is escaped (``repr``, JSON escapes) and cut short: one line."""
    fields = ", ".join(GenerateRequest.model_fields)
    parts = []
    for e in errors[:3]:
        loc = [str(x) for x in e.get("loc", ())]
        if e.get("type") == "json_invalid":
            reason = e.get("ctx", {}).get("error", "")
            return 400, f"the request body is not valid JSON ({reason})"
        if not loc:
            return 400, f"the request body must be a JSON object (fields: {fields})"
        known = loc[0] in GenerateRequest.model_fields
        name = loc[0] if known else _short(json.dumps(".".join(loc))[1:-1])  # e.g. "a\nb"
        if e.get("type") == "extra_forbidden":
            parts.append(f"{name}: unknown field (fields: {fields})")
        else:
            parts.append(f"{name}: {e.get('msg', 'invalid')}, got {_short(repr(e.get('input')))}")
    return 422, "; ".join(dict.fromkeys(parts))
