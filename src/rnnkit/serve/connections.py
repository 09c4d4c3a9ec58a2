"""The connections of ``rnnkit serve``: uvicorn's h11 protocol with the two bounds uvicorn lacks,
the file descriptors they need, and a log filter that turns a flood into one line.

* **A request must arrive in time**: its head and body within ``request_timeout`` seconds of
  the connection opening (or of its previous answer), else the connection is closed. uvicorn
  closes a connection idle *between* requests (``timeout_keep_alive``) but waits for ever for
  the rest of a half-sent request, so each such connection held a file descriptor until the
  process ran out of them.
* **At most ``max_connections`` are open.** One more closes the connection that has waited
  longest for (the rest of) its request, or idled longest between requests; if every one has a
  request in flight, the newcomer is answered 503 and closed. A flood of half-open connections
  therefore cannot shut out a real client or ``/health``. (uvicorn's ``limit_concurrency``
  answers 503 only once a request head has arrived, so it bounds requests, not connections.)
* :func:`raise_fd_limit`: the soft ``RLIMIT_NOFILE`` raised to what those connections, the
  listening backlog and the process itself need, or a one-line error if the hard limit is lower.
* :class:`Repeats`: a logging filter letting one record per message through per interval, an
  ``OSError``'s traceback cut to its reason (asyncio logs every failed ``accept()``).

The protocol is a subclass of uvicorn's ``H11Protocol`` (the pure-Python parser, chosen even
where httptools is installed, so these limits and h11's header-size limit always hold). What is
not here: the body limit (``body.py``), the command line (``command.py``).
"""

from __future__ import annotations

import logging
import math
import time

from rnnkit.errors import UserError

BACKLOG = 256  # the listening queue: also how many connections asyncio may accept at once
MAX_HEAD = 16384  # bytes of request line + headers (h11's max_incomplete_event_size)
RESERVED_FDS = 64  # the process's own files: the model, the log, pipes, the selector
FLOOD_LOGGERS = ("asyncio", "uvicorn.error")
_BAD_REQUEST = b'{"error": "not a valid HTTP/1.1 request, or its head is over %d bytes"}' % MAX_HEAD
_BUSY_HEAD = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n")  # fmt: skip
_BUSY = (
    b'{"error": "busy: every connection has a request in flight (the server\'s '
    b'--max-connections); retry later"}'
)


def raise_fd_limit(max_connections: int) -> None:
    """Make room for ``max_connections`` open connections plus four accept bursts of ``BACKLOG``:
    raise the soft RLIMIT_NOFILE when it is lower, or a one-line UserError when the hard limit
    does not allow it (before anything listens)."""
    import resource  # Unix only

    need = max_connections + 4 * BACKLOG + RESERVED_FDS  # the evicted take a few turns to close
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise UserError(
                f"--max-connections {max_connections} needs about {need} file descriptors and "
                f"this process may open at most {hard} (ulimit -Hn): lower --max-connections"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def protocol_class(max_connections: int, request_timeout: float) -> type:
    """uvicorn's ``H11Protocol`` with a request timeout and a connection bound (module
    docstring); pass it as ``uvicorn.Config(http=...)``."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    reading_request = (h11.IDLE, h11.SEND_BODY)
    waiting: dict[H11Protocol, None] = {}  # connections reading a request, oldest first

    class BoundedH11Protocol(H11Protocol):
        timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._start_waiting()
            if len(self.connections) > max_connections:
                self._make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state not in reading_request:  # the whole request is here
                self._stop_waiting()

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():  # wait for the next request (or a pipelined one)
                self._start_waiting()
            super().on_response_complete()

        def _start_waiting(self) -> None:
            self._stop_waiting()
            waiting[self] = None
            self.timer = self.loop.call_later(request_timeout, self._timed_out)

        def _stop_waiting(self) -> None:
            waiting.pop(self, None)
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

        def _timed_out(self) -> None:
            self.timer = None
            if self in waiting:
                self._close()

        def _close(self) -> None:
            waiting.pop(self, None)
            if not self.transport.is_closing():
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to a request h11 cannot parse, as one-line JSON."""
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                       (b"content-length", b"%d" % len(_BAD_REQUEST))]  # fmt: skip
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=_BAD_REQUEST), h11.EndOfMessage()):  # fmt: skip
                self.transport.write(self.conn.send(event))
            self._close()

        def _make_room(self) -> None:
            oldest = next(iter(waiting))  # self is among them, the newest
            if oldest is not self:
                oldest._close()
                return
            self.transport.write(_BUSY_HEAD % len(_BUSY) + _BUSY)
            self._close()

    return BoundedH11Protocol


def uvicorn_settings(limits) -> dict:
    """The keyword arguments of ``uvicorn.Config`` that bound connections, for ``limits``
    (a :class:`rnnkit.serve.request.Limits`)."""
    return {
        "http": protocol_class(limits.max_connections, limits.request_timeout),
        "ws": "none",
        "backlog": BACKLOG,
        "timeout_keep_alive": limits.keep_alive,
        "h11_max_incomplete_event_size": MAX_HEAD,
    }


def check_seconds(flag: str, value: float) -> None:
    """A finite number of seconds > 0 (at most a day), or a one-line UserError."""
    if not (math.isfinite(value) and 0 < value <= 86400):
        raise UserError(f"{flag} must be a number of seconds > 0 and <= 86400, got {value}")


class Repeats(logging.Filter):
    """At most one record per ``every`` seconds for each message (its first line, per logger);
    the next one let through says how many were dropped. A record's ``OSError`` is shown as its
    reason on the same line, without a traceback; any other traceback (a bug) is kept."""

    def __init__(self, every: float = 10.0, clock=time.monotonic) -> None:
        super().__init__()
        self.every, self.clock = every, clock
        self.shown: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (when, dropped since)

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = self.clock()
        when, dropped = self.shown.get(key, (-math.inf, 0))
        if now - when < self.every:
            self.shown[key] = (when, dropped + 1)
            return False
        if len(self.shown) > 1000:  # many different messages: none is a flood worth counting
            self.shown.clear()
        self.shown[key] = (now, 0)
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, OSError) or dropped:
            message = record.getMessage().split("\n", 1)[0]
            if isinstance(error, OSError):
                message += f" ({error.strerror or error})"
                record.exc_info, record.exc_text = None, None
            if dropped:
                message += f" ({dropped} more like this in the last {now - when:.0f} s)"
            record.msg, record.args = message, ()
        return True


def quiet_floods() -> None:
    """Install a :class:`Repeats` on the loggers a flood of connections fills (after uvicorn
    has configured logging)."""
    for name in FLOOD_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, Repeats) for f in logger.filters):
            logger.addFilter(Repeats())
