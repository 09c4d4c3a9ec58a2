"""The request body limit of ``rnnkit serve``: :class:`BodyLimit`, an ASGI middleware that hands
the app a body of at most ``max_bytes`` or answers for it.

* 400 for a request that frames its body two ways, ``Content-Length`` *and*
  ``Transfer-Encoding`` (RFC 9112 section 6.3: such a message may be a smuggling attempt; the
  server frames it by Transfer-Encoding, so its Content-Length says nothing about its size).
* 413 from ``Content-Length`` before reading anything, and 413 as soon as the bytes that arrive
  pass the limit, whatever the headers said: the body is counted as it comes, never trusted.
* Both answers close the connection, so the rest of a refused body is not read.

What is not here: the JSON of the body and its fields (``request.py``), connections
(``connections.py``).
"""

from __future__ import annotations

from fastapi.responses import JSONResponse


class BodyLimit:
    """ASGI middleware: the app sees the whole body (at most ``max_bytes``) as one message, or
    the client gets a one-line JSON 400 / 413 and the connection is closed."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        names = [name.lower() for name, _ in scope.get("headers") or []]
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and b"transfer-encoding" in names:
            both = "a request may not carry both Content-Length and Transfer-Encoding"
            return await _refuse(400, both, scope, send)
        if length is not None and not length.isdigit():
            return await _refuse(400, "the Content-Length header is not a number", scope, send)
        if length is not None and int(length) > self.max_bytes:
            return await self._too_large(scope, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await self._too_large(scope, send)
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)

    async def _too_large(self, scope, send) -> None:
        await _refuse(413, f"the request body is larger than {self.max_bytes} bytes", scope, send)


async def _refuse(status: int, message: str, scope, send) -> None:
    """A one-line JSON error with ``Connection: close``: the server closes the connection after
    it instead of reading the rest of the body."""
    response = JSONResponse({"error": message}, status_code=status, headers={"Connection": "close"})
    await response(scope, _no_body, send)


async def _no_body() -> dict:
    return {"type": "http.disconnect"}
