"""``rnnkit serve`` against an attacker: a real server on loopback receives raw bytes -- a body
framed two ways (Content-Length and chunked), hundreds of half-sent requests, the FastAPI
documentation paths -- and stays small and answering; the log filter that turns a flood of
accept errors into one line; the connection flags' one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="rnnkit[serve] is not installed")
pytest.importorskip("uvicorn", reason="rnnkit[serve] is not installed")

from rnnkit.cli import main as rnnkit_main
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.trainer.loop import train

TEXT = "".join(f"{who} saw the {what}.\n" for who in ("anna", "bruno") for what in ("moon", "sea"))
TIMEOUT = 2.0  # the server's --request-timeout in these tests
MAX_CONNECTIONS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("serve_limits")
    (tmp / "text.txt").write_text(TEXT * 10)
    config = RunConfig()
    apply_overrides(config, {
        "data": {"paths": [str(tmp / "text.txt")], "cache_dir": str(tmp / "cache")},
        "model": {"embed": 8, "hidden": 8, "layers": 1},
        "train": {"out": str(tmp / "run"), "seq_len": 8, "batch_size": 2, "max_steps": 1,
                  "eval_every": 1, "eval_batches": 1, "sample_every": 0, "log_every": 1,
                  "threads": 1, "seed": 0},
    }, "test")  # fmt: skip
    train(config, log=lambda *_: None)
    return tmp / "run"


class Server:
    """``python -m rnnkit.serve`` in a subprocess: its address, pid and stderr lines."""

    def __init__(self, run: Path, *flags: str) -> None:
        command = [sys.executable, "-m", "rnnkit.serve", str(run), "--port", "0",
                   "--log-level", "warning", *flags]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stderr.readline()
        match = re.search(r"on http://([\d.]+):(\d+) ", line)
        assert match, line + self.process.stderr.read()
        self.address = (match.group(1), int(match.group(2)))
        self.lines: list[str] = []  # drained, so that a full pipe never blocks the server
        self.drain = threading.Thread(target=lambda: self.lines.extend(self.process.stderr))
        self.drain.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if self.request(b"GET /health HTTP/1.1\r\nHost: x\r\n")[0] == 200:
                    return
            time.sleep(0.05)
        raise AssertionError("the server did not answer /health")

    def request(self, head: bytes, body: bytes = b"") -> tuple[int, dict, dict]:
        """Send ``head`` (+ Connection: close) and ``body``; the status, headers, JSON body."""
        with socket.create_connection(self.address, timeout=20) as sock:
            sock.sendall(head + b"Connection: close\r\n\r\n" + body)
            return parse(read_all(sock))

    def rss(self) -> int:
        """Resident memory, bytes (VmRSS from /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(timeout=60) == 130
        self.drain.join(timeout=10)
        return "".join(self.lines)


def read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection: a close with part of a refused
    body unread is a reset (RST), which ends the reading too."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def parse(response: bytes) -> tuple[int, dict, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    is_json = "json" in headers.get("content-type", "")
    return int(lines[0].split()[1]), headers, json.loads(body) if is_json else {}


@pytest.fixture(scope="module")
def server(run):
    """max_body = 16384 + 12 * 10 bytes; 3 connections; 2 s to send a request."""
    server = Server(run, "--max-prime", "10", "--max-length", "1000000",
                    "--max-connections", str(MAX_CONNECTIONS),
                    "--request-timeout", str(TIMEOUT), "--keep-alive", "1")  # fmt: skip
    yield server
    log = server.stop()
    assert "Traceback" not in log and log.count("\n") < 20, log


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes: it may close the connection before the end."""
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_a_body_framed_two_ways_is_refused_before_it_is_read(server):
    """Content-Length: 10 with Transfer-Encoding: chunked once let an 8 MiB body (any size)
    past the limit, buffered and parsed whole. Now 400 at once, the connection closed, and
    the server's memory does not grow by the body."""
    before = server.rss()
    body = b'{"prime": "' + b"a" * (8 << 20) + b'"}'
    head = (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    with socket.create_connection(server.address, timeout=20) as sock:
        chunked = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
        sender = threading.Thread(target=_send_quietly, args=(sock, head + chunked))
        sender.start()
        status, headers, answer = parse(read_all(sock))
        sender.join(timeout=20)
    assert status == 400, answer
    assert "both Content-Length and Transfer-Encoding" in answer["error"]
    assert headers.get("connection") == "close"
    assert server.rss() - before < 4 << 20, (before, server.rss())


def test_an_oversized_chunked_body_closes_its_connection(server):
    """413 as soon as the chunks pass the limit, and the connection is closed: the server
    does not go on reading (and discarding) the rest of a body it refused."""
    head = b"POST /generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(head + b"%x\r\n" % (1 << 30) + b"a" * 40_000)  # 1 GiB announced, 40 KB sent
        status, headers, answer = parse(read_all(sock))  # ends: the server closed it
    assert status == 413 and "larger than 16504 bytes" in answer["error"]
    assert headers.get("connection") == "close"


def test_malformed_heads_are_one_line_json_errors(server):
    """A head over 16 KiB (h11's limit, set explicitly) and a malformed header: 400, closed."""
    long_header = b"X: " + b"a" * 20_000 + b"\r\n"
    status, headers, answer = server.request(b"GET /health HTTP/1.1\r\n" + long_header)
    assert status == 400 and headers.get("connection") == "close"
    assert answer == {"error": "not a valid HTTP/1.1 request, or its head is over 16384 bytes"}
    status, _, answer = server.request(b"GET /health HTTP/1.1\r\nBad Header\r\n")
    assert status == 400 and "not a valid HTTP/1.1 request" in answer["error"]


def test_when_every_connection_is_busy_one_more_gets_503(server):
    """--max-connections 3, each with a generation in flight (two running, one queued): a
    fourth connection gets a JSON 503 at once; once they go, /health answers again."""
    body = b'{"length": 1000000, "stream": true}'
    streams = []
    for _ in range(MAX_CONNECTIONS):
        sock = socket.create_connection(server.address, timeout=10)
        streams.append(sock)
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))  # fmt: skip
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    status, headers, answer = server.request(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    for sock in streams:
        sock.close()
    assert status == 503 and headers["retry-after"] == "1", answer
    assert "--max-connections" in answer["error"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            status, _, answer = server.request(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            if status == 200 and answer["running"] == 0:
                break
        time.sleep(0.05)
    assert status == 200 and answer == {"status": "ok", "running": 0, "waiting": 0}


def test_half_open_connections_are_bounded_and_closed(server):
    """200 connections that send half a header and stop, and one that stops half-way through
    its body, against --max-connections 3 --request-timeout 2: /health still answers at
    once (it closes the longest waiting), and the server closes every one of them within the
    timeout."""
    stalled = []
    for _ in range(200):
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        stalled.append(sock)
    sock = socket.create_connection(server.address, timeout=10)
    sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    stalled.append(sock)
    opened = time.monotonic()
    status, _, answer = server.request(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    assert status == 200 and answer["status"] == "ok"
    assert time.monotonic() - opened < TIMEOUT  # answered, not merely after the timeout
    still_open = 0
    for sock in stalled:
        sock.settimeout(max(0.05, opened + TIMEOUT + 5 - time.monotonic()))
        try:
            still_open += bool(read_all(sock))  # a closed connection reads b""
        except TimeoutError:
            still_open += 1
        finally:
            sock.close()
    assert still_open == 0


def test_the_documentation_paths_are_not_served(server, run):
    for path in (b"/docs", b"/redoc", b"/openapi.json", b"/docs/oauth2-redirect"):
        status, _, answer = server.request(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n")
        assert (status, answer) == (404, {"error": "Not Found"}), path


def test_the_documentation_is_served_with_docs(run):
    import httpx

    from rnnkit.serve.app import create_app
    from rnnkit.tasks.saved import load_model

    async def get(app, path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
            return await http.get(path)

    app = create_app(*load_model(run), docs=True)
    assert asyncio.run(get(app, "/docs")).status_code == 200
    assert asyncio.run(get(app, "/openapi.json")).json()["info"]["title"] == "rnnkit"
    assert asyncio.run(get(create_app(*load_model(run)), "/openapi.json")).status_code == 404


# ---- the log: a flood is one line per interval ---------------------------------------------------


def test_accept_errors_are_one_line_per_interval():
    """asyncio logs each failed accept() (EMFILE: too many open files) with a traceback; the
    server's filter lets one line through per interval, then says how many it dropped."""
    from rnnkit.serve.connections import Repeats

    now = [0.0]
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("asyncio")
    repeats = Repeats(every=10, clock=lambda: now[0])
    logger.addFilter(repeats)
    logger.addHandler(handler)
    loop = asyncio.new_event_loop()
    try:
        error = OSError(errno.EMFILE, "Too many open files")
        context = {"message": "socket.accept() out of system resource", "exception": error}
        for _ in range(1000):
            loop.call_exception_handler(context)
        now[0] = 11.0
        loop.call_exception_handler(context)
    finally:
        loop.close()
        logger.removeFilter(repeats)
        logger.removeHandler(handler)
    lines = [logging.Formatter().format(r) for r in records]
    assert lines == [
        "socket.accept() out of system resource (Too many open files)",
        "socket.accept() out of system resource (Too many open files) "
        "(999 more like this in the last 11 s)",
    ]


def test_the_filter_keeps_other_messages_and_real_tracebacks():
    from rnnkit.serve.connections import Repeats

    repeats = Repeats(every=10, clock=lambda: 0.0)

    def record(msg, exc_info=None):
        return logging.LogRecord("uvicorn.error", logging.ERROR, "", 0, msg, (), exc_info)

    try:
        raise KeyError("bug")
    except KeyError:
        bug = record("Exception in ASGI application\n", sys.exc_info())
    assert repeats.filter(bug) and bug.exc_info is not None  # a bug keeps its traceback
    assert repeats.filter(record("Invalid HTTP request received."))
    assert not repeats.filter(record("Invalid HTTP request received."))
    assert repeats.filter(record("Shutting down"))


# ---- flags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--max-connections", "0"], "--max-connections must be >= 1, got 0"),
        (["--request-timeout", "0"], "--request-timeout must be a number of seconds > 0"),
        (["--request-timeout", "nan"], "--request-timeout must be a number of seconds > 0"),
        (["--keep-alive", "inf"], "--keep-alive must be a number of seconds > 0"),
        (["--max-connections", "100000000"], "--max-connections 100000000 needs about"),
    ],
)
def test_connection_flags_are_checked(tmp_path, capsys, flags, words):
    assert rnnkit_main(["serve", str(tmp_path / "nothing"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and words in err and err.count("\n") == 1, err
