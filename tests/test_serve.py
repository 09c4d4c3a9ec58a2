"""``rnnkit serve``: the API in process (answers equal the library's, every bad request is a
one-line JSON error, 429 when full, 413 before parsing) and a real server in a subprocess (a
small load test with seeded answers equal alone and under load, server-sent events, a client
disconnect freeing its worker, startup errors)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

pytest.importorskip("fastapi", reason="rnnkit[serve] is not installed")
pytest.importorskip("uvicorn", reason="rnnkit[serve] is not installed")
pytest.importorskip("httpx", reason="rnnkit[serve]'s tests need httpx")

import httpx

from rnnkit.cli import main as rnnkit_main
from rnnkit.config import RunConfig, apply_overrides
from rnnkit.generation import generate
from rnnkit.serve.app import Limits, create_app
from rnnkit.tasks.saved import load_model
from rnnkit.trainer.loop import train

TEXT = "".join(
    f"{who} saw the {what} by {when}.\n"
    for who in ("anna", "bruno", "carla", "dario")
    for what in ("moon", "river", "tower", "garden", "road")
    for when in ("night", "day", "dawn")
)  # 60 lines, about 1,500 characters


def _train(tmp, name: str, **sections):
    config = RunConfig()
    settings = {
        "data": {"cache_dir": str(tmp / "cache")},
        "model": {"embed": 8, "hidden": 16, "layers": 1},
        "train": {"out": str(tmp / name), "seq_len": 16, "batch_size": 4, "max_steps": 4,
                  "eval_every": 4, "eval_batches": 1, "sample_every": 0, "log_every": 1,
                  "threads": 1, "seed": 0},
    }  # fmt: skip
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    apply_overrides(config, settings, "test")
    train(config, log=lambda *_: None)
    return tmp / name


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "text.txt").write_text(TEXT)
    return _train(tmp, "run", data={"paths": [str(tmp / "text.txt")]})


@pytest.fixture(scope="module")
def loaded(run):
    return load_model(run)


class Client:
    """Requests to an app in process, one at a time (httpx's ASGI transport)."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, path: str, **options) -> httpx.Response:
        async def send():
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
                return await http.request(method, path, **options)

        return asyncio.run(send())

    def get(self, path: str, **options) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, **options) -> httpx.Response:
        return self.request("POST", path, **options)


@pytest.fixture(scope="module")
def client(loaded):
    model, vocab, config = loaded
    limits = Limits(max_length=300, max_prime=50, max_concurrent=2, queue=2)
    return Client(create_app(model, vocab, config, limits, source="here"))


async def chunks(*parts: bytes):
    """A body sent in pieces, without Content-Length (Transfer-Encoding: chunked)."""
    for part in parts:
        yield part


def library_text(loaded, **settings) -> str:
    model, vocab, _ = loaded
    return generate(model, vocab, **{"temperature": 0.8, "length": 200, **settings})[
        0
    ]  # serve's defaults


def events(body: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a text/event-stream body."""
    found = re.findall(r"event: (\w+)\ndata: (.*)\n\n", body)
    return [(name, json.loads(data)) for name, data in found]


# ---- in process --------------------------------------------------------------------------------


def test_health_and_model_describe_the_run(client, loaded):
    assert client.get("/health").json() == {"status": "ok", "running": 0, "waiting": 0}
    about = client.get("/model").json()
    model, vocab, _ = loaded
    assert about["cell"] == "lstm" and about["hidden"] == 16 and about["embed"] == 8
    assert about["hidden_sizes"] == [16]
    assert about["vocab_size"] == len(vocab) and about["run"] == "here"
    assert about["parameters"] == sum(p.numel() for p in model.parameters())
    assert about["device"] == "cpu"  # load_model's default: the CPU
    assert about["limits"]["max_length"] == 300 and about["limits"]["max_concurrent"] == 2


def test_generate_equals_the_library_and_reports_its_seed(client, loaded):
    body = {"prime": "anna ", "length": 80, "temperature": 1.0, "top_k": 5, "seed": 11}
    answer = client.post("/generate", json=body).json()
    expected = library_text(loaded, prime="anna ", length=80, temperature=1.0, top_k=5, seed=11)
    assert answer == {"text": expected, "finish_reason": "length", "seed": 11, "chars": 80}
    unseeded = client.post("/generate", json={"length": 30, "top_p": 0.9}).json()
    again = client.post("/generate", json={"length": 30, "top_p": 0.9, "seed": unseeded["seed"]})
    assert again.json()["text"] == unseeded["text"]  # the returned seed reproduces the text
    greedy = client.post("/generate", content=b"").json()  # an empty body: every default
    assert greedy["chars"] == 200 and greedy["finish_reason"] == "length"


def test_stop_strings_end_the_text(client, loaded):
    full = library_text(loaded, length=300, seed=3)
    stop = next(c for c in full[5:] if c in "aeiou")
    answer = client.post("/generate", json={"length": 300, "seed": 3, "stop": stop}).json()
    assert answer["text"] == full[: full.index(stop)] and answer["finish_reason"] == "stop"


def test_stream_events_join_to_the_text(client):
    body = {"prime": "carla", "length": 120, "seed": 5, "stop": ["zz"]}
    plain = client.post("/generate", json=body).json()
    response = client.post("/generate", json=body | {"stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    found = events(response.text)
    assert {name for name, _ in found[:-1]} == {"text"} and found[-1][0] == "done"
    assert "".join(data["text"] for _, data in found[:-1]) == plain["text"]
    assert found[-1][1] == {"finish_reason": "length", "seed": 5, "chars": 120}


def test_stream_events_carry_many_tokens_each(client):
    """One event per STREAM_INTERVAL, not one per token: 300 tokens take a few milliseconds."""
    response = client.post("/generate", json={"length": 300, "seed": 6, "stream": True})
    found = events(response.text)
    assert sum(len(data["text"]) for name, data in found if name == "text") == 300
    assert len(found) < 300 // 4, len(found)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ('{"length": 0}', 422, "length: Input should be greater than or equal to 1"),
        ('{"length": 301}', 422, "length: at most 300 (the server's --max-length)"),
        ('{"length": 5.0}', 422, "length: Input should be a valid integer"),
        ('{"length": "5"}', 422, "length: Input should be a valid integer"),
        ('{"prime": "' + "a" * 51 + '"}', 422, "prime: at most 50 characters"),
        ('{"prime": "anna \\u00e9Q"}', 422, "prime: characters not in the vocabulary: 'Q', 'é'"),
        ('{"temperature": -1}', 422, "temperature: Input should be greater than or equal to 0"),
        ('{"temperature": NaN}', 422, "temperature: Input should be a finite number"),
        ('{"temperature": 1e999}', 422, "temperature: Input should be a finite number"),
        ('{"top_k": -1}', 422, "top_k: Input should be greater than or equal to 0"),
        ('{"top_p": 0}', 422, "top_p: Input should be greater than 0"),
        ('{"top_p": 1.5}', 422, "top_p: Input should be less than or equal to 1"),
        ('{"seed": -1}', 422, "seed: Input should be greater than or equal to 0"),
        ('{"seed": 18446744073709551616}', 422, "seed: Input should be less than or equal"),
        ('{"stop": ["a", "b", "c", "d", "e"]}', 422, "stop: List should have at most 4 items"),
        ('{"stop": [""]}', 422, "stop: String should have at least 1 character"),
        ('{"stop": "' + "x" * 65 + '"}', 422, "stop: String should have at most 64 characters"),
        ('{"stream": "yes"}', 422, "stream: Input should be a valid boolean"),
        ('{"unknown": "drop"}', 422, "unknown: Input should be 'error' or 'skip'"),
        ('{"lenght": 5}', 422, "lenght: unknown field (fields: prime, length,"),
        ('{"le\\nngth": 5}', 422, "le\\nngth: unknown field"),  # the newline escaped
        ('{"\\u00e9t\\u00e9": 5}', 422, "\\u00e9t\\u00e9: unknown field"),
        ('{"' + "x" * 500 + '": 5}', 422, "xxx...: unknown field"),  # cut short
        ("[1, 2]", 400, "the request body must be a JSON object"),
        ("{bad", 400, "the request body is not valid JSON"),
    ],
)
def test_bad_requests_are_one_line_json_errors(client, body, status, words):
    response = client.post("/generate", content=body.encode())  # no Content-Type: still JSON
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"]
    message = response.json()["error"]
    assert words in message and "\n" not in message


FIELDS = [
    *("prime", "length", "temperature", "top_k", "top_p", "seed", "stop", "unknown", "stream"),
    *("bogus", "le\nngth"),
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
BODIES = (
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=5).map(json.dumps)
    | VALUES.map(json.dumps)
    | st.binary(max_size=60).map(lambda b: b.decode("latin-1"))
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=BODIES)
def test_any_body_gets_an_answer_or_a_one_line_json_error(client, body):
    """Whatever a client sends: 200 with text, or 400/413/422 with {"error": one line}. A
    valid request generates (at most the fixture's 300 characters), so this is the server's
    whole path, not only its parser."""
    response = client.post("/generate", content=body.encode("utf-8", "surrogatepass"))
    assert response.status_code in (200, 400, 413, 422), response.text
    data = response.json() if "json" in response.headers["content-type"] else None
    if response.status_code == 200:
        assert data is None or isinstance(data["text"], str)
    else:
        assert list(data) == ["error"] and "\n" not in data["error"], data
        assert 0 < len(data["error"]) < 1000


def test_unknown_characters_can_be_skipped(client, loaded):
    answer = client.post("/generate", json={"prime": "QQanna", "unknown": "skip", "seed": 2})
    assert answer.json()["text"] == library_text(loaded, prime="anna", length=200, seed=2)


def test_other_paths_and_oversized_bodies_are_json_errors(client):
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    assert client.get("/generate").status_code == 405
    big = b'{"prime": "' + b"a" * 70_000 + b'"}'  # Limits(max_prime=50).max_body < 70 KB
    response = client.post("/generate", content=big)
    assert response.status_code == 413 and "larger than" in response.json()["error"]
    chunked = client.post("/generate", content=chunks(big[:40_000], big[40_000:]))
    assert chunked.status_code == 413
    small = client.post("/generate", content=chunks(b'{"length": 3,', b' "seed": 1}'))
    assert small.status_code == 200 and small.json()["chars"] == 3


def test_a_broken_model_is_a_500_json_error(loaded):
    model, vocab, config = loaded
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.head.bias.fill_(float("nan"))
    client = Client(create_app(broken, vocab, config))
    plain = client.post("/generate", json={"length": 5})
    assert plain.status_code == 500 and "logits are not finite" in plain.json()["error"]
    found = events(client.post("/generate", json={"length": 5, "stream": True}).text)
    assert found[-1][0] == "error" and "logits are not finite" in found[-1][1]["error"]


class Gated(nn.Module):
    """A language model whose first forward waits for ``gate``: a request held running."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.gate = model, threading.Event()

    def forward(self, idx):
        assert self.gate.wait(30)
        return self.model(idx)

    def step(self, token, state):
        return self.model.step(token, state)


def test_a_full_server_answers_429_at_once_and_recovers(loaded):
    model, vocab, config = loaded
    gated = Gated(model)
    app = create_app(gated, vocab, config, Limits(max_concurrent=1, queue=1))

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
            body = {"length": 20, "seed": 4}
            held = [asyncio.create_task(http.post("/generate", json=body)) for _ in range(2)]
            for _ in range(500):  # one running, one waiting
                counts = (await http.get("/health")).json()
                if (counts["running"], counts["waiting"]) == (1, 1):
                    break
                await asyncio.sleep(0.01)
            refused = await http.post("/generate", json=body | {"stream": True})
            gated.gate.set()
            answers = await asyncio.gather(*held)
            after = await http.post("/generate", json=body)
            return counts, refused, answers, after

    counts, refused, answers, after = asyncio.run(scenario())
    assert (counts["running"], counts["waiting"]) == (1, 1)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert "busy: 1 generations running and 1 waiting" in refused.json()["error"]
    expected = library_text(loaded, length=20, seed=4)
    assert [a.json()["text"] for a in answers] == [expected, expected]
    assert after.status_code == 200 and after.json()["text"] == expected


# ---- startup errors: one line, exit status 2, before listening ---------------------------------


def test_startup_errors_are_one_line(run, tmp_path, capsys, monkeypatch):
    names = tmp_path / "names"
    names.mkdir()
    for label, first in (("Alpha", "a"), ("Beta", "b")):
        (names / f"{label}.txt").write_text(
            "\n".join(first + "xyz"[: i % 3 + 1] for i in range(12))
        )
    classify = _train(tmp_path, "classify", task={"name": "classify"},
                      data={"paths": [str(names)]})  # fmt: skip
    busy = __import__("socket").create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    cases = [
        ([str(tmp_path / "nothing")], "no checkpoint or run directory at"),
        ([str(classify)], "holds a --task classify model, not a language model"),
        ([str(run), "--port", str(port)], f"--port {port}: cannot listen (Address already in"),
        ([str(run), "--max-concurrent", "0"], "--max-concurrent must be >= 1, got 0"),
        ([str(run), "--port", "70000"], "--port must be <= 65535"),
        ([str(run), "--length", "5"], "unrecognized arguments: --length 5"),
    ]
    try:
        for argv, words in cases:
            assert rnnkit_main(["serve", *argv]) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith("rnnkit: error: ") and words in err and err.count("\n") == 1
    finally:
        busy.close()
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if rnnkit[serve] were not installed
    assert rnnkit_main(["serve", str(run)]) == 2
    assert "pip install 'rnnkit[serve]'" in capsys.readouterr().err


# ---- a real server ------------------------------------------------------------------------------


def wait_healthy(url: str) -> None:
    """Until GET /health answers 200 (at most about 30 s of refused connections)."""
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)


@pytest.fixture(scope="module")
def server(run):
    """``python -m rnnkit.serve RUN --port 0`` (the port it picked is on its first line)."""
    command = [sys.executable, "-m", "rnnkit.serve", str(run), "--port", "0",
               "--max-concurrent", "2", "--queue", "16", "--max-length", "1000000",
               "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stderr.readline()
    match = re.search(r"on (http://\S+) ", line)
    assert match, line + process.stderr.read()
    url = match.group(1)
    lines: list[str] = []  # drained, so that a full pipe never blocks the server
    drain = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    drain.start()
    wait_healthy(url)
    yield url
    process.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn finishes what is in flight, then stops
    assert process.wait(timeout=60) == 130  # as every rnnkit command interrupted by Ctrl-C
    drain.join(timeout=10)
    assert "Traceback" not in "".join(lines), "".join(lines)


def test_load_with_seeded_answers_equal_alone_and_under_load(server, loaded):
    seeds = range(6)

    def alone_text(seed: int) -> str:
        body = {"length": 60, "seed": seed}
        return httpx.post(f"{server}/generate", json=body, timeout=60).json()["text"]

    alone = {s: alone_text(s) for s in seeds}
    assert alone == {s: library_text(loaded, length=60, seed=s) for s in seeds}

    async def load(n: int, concurrency: int):
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=server, limits=limits, timeout=60) as http:

            async def one(i: int):
                async with gate:
                    body = {"length": 60, "seed": i % 6, "stream": i % 5 == 0}
                    return i, await http.post("/generate", json=body)

            return await asyncio.gather(*(one(i) for i in range(n)))

    answers = asyncio.run(load(60, 8))
    assert [r.status_code for _, r in answers] == [200] * 60
    for i, response in answers:
        if i % 5:
            assert response.json()["text"] == alone[i % 6]
        else:
            found = events(response.text)
            assert "".join(d.get("text", "") for name, d in found if name == "text") == alone[i % 6]
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "running": 0, "waiting": 0}


def test_a_disconnected_stream_stops_its_generation(server):
    body = {"length": 1_000_000, "seed": 1, "stream": True}  # minutes of work if it ran on
    with httpx.stream("POST", f"{server}/generate", json=body, timeout=30) as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert first == "event: text"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = httpx.get(f"{server}/health").json()
        if counts["running"] == 0:
            break
        time.sleep(0.05)
    assert counts == {"status": "ok", "running": 0, "waiting": 0}


def _health_until(server: str, running: int, waiting: int) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = httpx.get(f"{server}/health").json()
        if (counts["running"], counts["waiting"]) == (running, waiting):
            break
        time.sleep(0.05)
    return counts


def test_disconnected_streams_free_their_slots_running_or_waiting(server):
    """The server has 2 workers: two long streams run, a third waits; each one's client
    leaving frees its slot, the waiting one without ever running."""
    body = {"length": 1_000_000, "seed": 1, "stream": True}
    lines = []  # kept: a line iterator dropped half-read closes its connection
    with contextlib.ExitStack() as running:
        for _ in range(2):
            response = running.enter_context(
                httpx.stream("POST", f"{server}/generate", json=body, timeout=30)
            )
            lines.append(response.iter_lines())
            assert next(lines[-1]) == "event: text"
        with httpx.stream("POST", f"{server}/generate", json=body, timeout=30) as waiting:
            assert waiting.status_code == 200  # the 200 comes before a worker is free
            assert _health_until(server, 2, 1) == {"status": "ok", "running": 2, "waiting": 1}
        assert _health_until(server, 2, 0) == {"status": "ok", "running": 2, "waiting": 0}
    assert _health_until(server, 0, 0) == {"status": "ok", "running": 0, "waiting": 0}


def test_ctrl_c_is_exit_130_even_where_sigint_was_ignored(run):
    """A background job of a non-interactive shell starts with SIGINT ignored: uvicorn still
    stops on it, and the exit status is still the interrupted 130, not 0."""
    command = [sys.executable, "-m", "rnnkit.serve", str(run), "--port", "0",
               "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    url = re.search(r"on (http://\S+) ", process.stderr.readline()).group(1)
    wait_healthy(url)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert "rnnkit: interrupted" in process.stderr.read()


def test_the_load_benchmark_runs(run):
    """benchmarks/serve_load.py, a smoke run (timings are never asserted)."""
    script = Path(__file__).parents[1] / "benchmarks" / "serve_load.py"
    command = [sys.executable, str(script), "--run", str(run), "--requests", "24",
               "--concurrency", "4", "--length", "20", "--warmup", "4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failures             0\n" in result.stdout and "seeded mismatches    0" in result.stdout
    assert "latency p50/p95/p99" in result.stdout and "server RSS" in result.stdout
