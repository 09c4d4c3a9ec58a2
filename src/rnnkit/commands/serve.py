"""``rnnkit serve``: a trained language model over HTTP (FastAPI + uvicorn, ``rnnkit[serve]``).

    rnnkit serve runs/charlm                               # http://127.0.0.1:8000
    rnnkit serve runs/charlm --host 0.0.0.0 --port 8080 --max-concurrent 8 --queue 32
    rnnkit serve runs/charlm --max-connections 200 --request-timeout 5 --keep-alive 5
    curl -s localhost:8000/generate -d '{"prime": "ROMEO:", "length": 100, "seed": 1}'
    python -m rnnkit.serve runs/charlm --port 0            # the same command; 0: any free port

Order of work, so that every mistake is a one-line error with exit status 2 before anything
listens: the flags, the optional dependencies, the file descriptors ``--max-connections``
needs, the checkpoint (a ``--task lm`` run), then the socket (bound here, so "address in use"
is one line too), then uvicorn serves on it until Ctrl-C / SIGTERM, finishing the requests in
flight. The API itself is ``app.py``; the bounds on connections are ``connections.py``.
"""

from __future__ import annotations

import argparse
import socket
import sys

from rnnkit.commands.args import add_device, use_device
from rnnkit.errors import UserError
from rnnkit.serve.connections import BACKLOG, check_seconds

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def add_parser(commands) -> None:
    """Add ``serve`` to the CLI's subparsers (``commands``)."""
    serve = commands.add_parser(
        "serve", help="serve a language model over HTTP (POST /generate, GET /health, GET /model)"
    )
    serve.add_argument("checkpoint", metavar="DIR", help="run directory or checkpoint (--task lm)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: all)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="port (default 8000; 0: any free one, printed)"
    )
    serve.add_argument(
        "--max-concurrent",
        type=int,
        default=2,
        metavar="N",
        help="generations running at once, one worker thread each (default 2; the Python of "
        "each token step holds the GIL, so many more threads mostly contend)",
    )
    serve.add_argument(
        "--queue",
        type=int,
        default=16,
        metavar="N",
        help="requests waiting for a worker (default 16); one more gets 429",
    )
    serve.add_argument(
        "--max-length",
        type=int,
        default=2000,
        metavar="N",
        help="most characters a request may generate (default 2000)",
    )
    serve.add_argument(
        "--max-prime",
        type=int,
        default=4000,
        metavar="N",
        help="most characters of prime a request may send (default 4000)",
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch threads per generation (default 1: requests run side by side instead; "
        "a one-token step gains little from more)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        metavar="N",
        help="open connections at most (default 1000); one more closes the one that has waited "
        "longest for its request, or gets 503 if every one has a request in flight",
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a client has to send a whole request, headers and body, from connecting "
        "or from its previous answer; slower ones are closed (default 10)",
    )
    serve.add_argument(
        "--keep-alive",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds an idle connection stays open between requests (default 5)",
    )
    serve.add_argument(
        "--docs",
        action="store_true",
        help="serve FastAPI's /docs, /redoc and /openapi.json (off: 404; /docs loads its "
        "scripts from a CDN)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="uvicorn's log level (warning: no line per request)",
    )
    add_device(serve)


def run(args: argparse.Namespace) -> int:
    """Check everything, bind the socket, serve until Ctrl-C (or SIGTERM): uvicorn finishes the
    requests in flight and shuts down, then the interrupt reaches ``rnnkit.cli.main``, which
    prints ``rnnkit: interrupted`` and exits 130, as every rnnkit command does."""
    _check_flags(args)
    device = use_device(args)  # a missing device is refused before anything is loaded
    uvicorn = _require_serve_extra()
    from rnnkit.checkpoint.runs import find_checkpoint
    from rnnkit.devices import describe_device
    from rnnkit.serve import connections
    from rnnkit.serve.app import create_app
    from rnnkit.serve.request import Limits
    from rnnkit.tasks.saved import load_model

    limits = Limits(args.max_length, args.max_prime, args.max_concurrent, args.queue,
                    args.max_connections, args.request_timeout, args.keep_alive)  # fmt: skip
    connections.raise_fd_limit(limits.max_connections)
    model, vocab, config = load_model(args.checkpoint, device)
    source = str(find_checkpoint(args.checkpoint).resolve())
    sock = _bind(args.host, args.port)
    app = create_app(model, vocab, config, limits, threads=args.threads, source=source,
                     docs=args.docs)  # fmt: skip
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    m = config.model
    print(
        f"rnnkit serve: {source} ({m.cell} {m.stack()}, {len(vocab)} symbols, "
        f"{describe_device(device)}) on {url} (max-concurrent {limits.max_concurrent}, "
        f"queue {limits.queue}; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    bounds = connections.uvicorn_settings(limits)
    settings = uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=10, **bounds)
    connections.quiet_floods()  # after uvicorn.Config: it configures the loggers
    server = uvicorn.Server(settings)
    server.run(sockets=[sock])  # re-raises the signal that stopped it, with its old handler ...
    if server.should_exit:  # ... which did nothing where SIGINT was ignored (a background job)
        raise KeyboardInterrupt
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    """Numbers in range, or a one-line UserError naming the flag."""
    lowest = {"port": 0, "max_concurrent": 1, "queue": 0, "max_length": 1, "max_prime": 0,
              "threads": 1, "max_connections": 1}  # fmt: skip
    for name, low in lowest.items():
        flag, value = "--" + name.replace("_", "-"), getattr(args, name)
        if value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if args.port > 65535:
        raise UserError(f"--port must be <= 65535, got {args.port}")
    check_seconds("--request-timeout", args.request_timeout)
    check_seconds("--keep-alive", args.keep_alive)


def _require_serve_extra():
    """uvicorn (and FastAPI), or a one-line error saying how to install them."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as error:
        raise UserError(
            f"rnnkit serve needs FastAPI and uvicorn ({error.name or error} is missing): "
            "pip install 'rnnkit[serve]'"
        ) from None
    return uvicorn


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a one-line UserError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as error:
        raise UserError(f"--host {host}: not an address of this machine ({error})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(BACKLOG)  # early connections wait in the backlog until uvicorn serves
    except OSError as error:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen ({error.strerror})") from None
    return sock
