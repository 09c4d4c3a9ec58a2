"""The outside audit's attacks on rnnkit, as a repeatable script: PASS or FAIL per attack.

    python benchmarks/attack.py                 # every attack (~3 minutes on 2 cores)
    python benchmarks/attack.py --only files onnx
    python benchmarks/attack.py --json attack.json

Groups (``--only``):

* ``server``: a body with both ``Content-Length: 10`` and ``Transfer-Encoding: chunked`` (the
  413 limit must hold whatever the headers say; the server's RSS must not grow by the body);
  2,000 connections that send half a header and stop, against a server whose descriptor limit
  is 1,024 (``/health`` must still answer, the log must stay small); FastAPI's ``/docs``,
  ``/redoc`` and ``/openapi.json`` (404 without ``--docs``).
* ``files``: a checkpoint whose ``config.json``, ``vocab.json`` or ``model.safetensors`` is a
  FIFO, a directory or a link to ``/dev/zero``; JSON bombs (60 MiB of ``[[],[],...]`` as the
  vocabulary or as an extra key of config.json, 500-deep nesting, a 4,299-digit integer,
  duplicate keys, ``NaN``); with forged sha256 digests, as an attacker would write them.
* ``onnx``: a 43 KB-class ``.onnx`` with the right signature and a ``ConstantOfShape`` node
  that asks for a 16384 x 16384 tensor (1 GiB).
* ``runs``: two ``rnnkit train --out same`` at once, and ``--resume`` while the first trains.

Each command runs in a child process with a timeout; its peak RSS comes from ``wait4``. An
attack passes when rnnkit refuses it with exit status 2 and one line on stderr (no traceback),
in time, and within the memory bound it prints (a clean run's peak plus a margin). Exit status 1
if any attack fails. Timings are never asserted in the test suite: the machines are shared.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RNNKIT = [sys.executable, "-m", "rnnkit"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
GROUPS = ("server", "files", "onnx", "runs")
BOMB_MB = 60
MARGIN_MB = 150  # a refusal may cost this much over a clean run's peak, no more


# --- running a child and measuring it ------------------------------------------------------


def measured(command: list[str], timeout: float = 60.0) -> dict:
    """Run ``command``; its exit status, stderr, seconds, whether it timed out, peak RSS (MiB)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=ENV,
                                 start_new_session=True)  # fmt: skip
        timer = threading.Timer(timeout, lambda: os.killpg(child.pid, signal.SIGKILL))
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)
        timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    killed = child.returncode == -signal.SIGKILL
    return {"code": child.returncode, "stderr": stderr, "seconds": round(seconds, 2),
            "timed_out": killed, "peak_mb": usage.ru_maxrss / 1024}  # fmt: skip


def refused(result: dict, *, limit_mb: float | None = None, says: str | None = None) -> tuple:
    """(passed, detail): exit 2, one line, no traceback, in time, within ``limit_mb``."""
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    problems = []
    if result["timed_out"]:
        problems.append(f"hung (killed after {result['seconds']:.0f} s)")
    elif result["code"] != 2:
        problems.append(f"exit {result['code']}")
    if len(lines) != 1 or "Traceback" in result["stderr"]:
        problems.append(f"{len(lines)} lines on stderr")
    if limit_mb is not None and result["peak_mb"] > limit_mb:
        problems.append(f"peak {result['peak_mb']:.0f} MiB > {limit_mb:.0f}")
    if says and not any(says in line for line in lines):
        problems.append(f"message lacks {says!r}")
    detail = f"exit {result['code']}, {result['seconds']:.1f} s, peak {result['peak_mb']:.0f} MiB"
    first = lines[0][:110] if lines else ""
    return not problems, f"{detail}: {'; '.join(problems) or first}"


# --- a small trained run to attack ---------------------------------------------------------


def train_tiny(out: Path, steps: int = 20) -> Path:
    command = [*RNNKIT, "train", "--preset", "tiny", "--out", str(out), "--max-steps", str(steps),
               "--eval-every", str(steps), "--threads", "1"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env=ENV)
    return out


def forged(run: Path, into: Path, *, edit=None, replace: dict | None = None) -> Path:
    """A copy of ``run/best`` with files replaced (bytes, or a callable making a special file)
    and config.json's sha256 digests rewritten to match, as a forger would."""
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(run / "best", into)
    meta = json.loads((into / "config.json").read_text())
    for name, content in (replace or {}).items():
        (into / name).unlink()
        if callable(content):
            content(into / name)
        else:
            (into / name).write_bytes(content)
            meta["files"][name] = hashlib.sha256(content).hexdigest()
    if edit is not None:
        edited = edit(meta)
        text = edited if isinstance(edited, (bytes, str)) else json.dumps(meta)
        (into / "config.json").write_bytes(text.encode() if isinstance(text, str) else text)
    elif replace and "config.json" not in replace:  # a FIFO there must not be written to
        (into / "config.json").write_text(json.dumps(meta))
    return into


def list_bomb(megabytes: int) -> bytes:
    """``[[],[],...]``: 3 bytes a list in the file, ~60 bytes each once parsed."""
    n = megabytes * 2**20 // 3
    return b"[" + b"[]," * (n - 1) + b"[]]"


# --- the attacks ---------------------------------------------------------------------------


def file_attacks(run: Path, tmp: Path) -> list[tuple]:
    clean = measured([*RNNKIT, "sample", str(run / "best"), "--length", "10"])
    if clean["code"] != 0:
        return [("clean sample (baseline)", False, clean["stderr"][-200:])]
    bound = clean["peak_mb"] + MARGIN_MB
    results = [("clean sample (baseline)", True, f"peak {clean['peak_mb']:.0f} MiB")]
    bomb = list_bomb(BOMB_MB)
    fifo, zero = os.mkfifo, (lambda p: p.symlink_to("/dev/zero"))
    cases = {
        "config.json is a FIFO": {"replace": {"config.json": fifo}},
        "config.json -> /dev/zero": {"replace": {"config.json": zero}},
        "vocab.json is a FIFO": {"replace": {"vocab.json": fifo}},
        "model.safetensors is a FIFO": {"replace": {"model.safetensors": fifo}},
        "model.safetensors -> /dev/zero": {"replace": {"model.safetensors": zero}},
        "vocab.json is a directory": {"replace": {"vocab.json": lambda p: p.mkdir()}},
        f"vocab.json: {BOMB_MB} MiB of [[],[],...]": {"replace": {"vocab.json": bomb}},
        f"config.json: extra key of {BOMB_MB} MiB": {"edit": lambda m: json.dumps(m)[:-1].encode()
                                                     + b', "x": ' + list_bomb(BOMB_MB) + b"}"},
        "config.json: 500-deep nesting": {"edit": lambda m: json.dumps(m)[:-1]
                                          + ', "x": ' + "[" * 500 + "]" * 500 + "}"},
        "config.json: a 4,299-digit integer": {"edit": lambda m: json.dumps(m).replace(
            '"hidden": 32', '"hidden": 1' + "0" * 4298)},
        "config.json: duplicate keys": {"edit": lambda m: json.dumps(m)[:-1]
                                        + ', "format": "rnnkit-checkpoint"}'},
        "config.json: forget_bias NaN": {"edit": lambda m: json.dumps(m).replace(
            '"forget_bias": 0.0', '"forget_bias": NaN')},
    }  # fmt: skip
    for i, (name, how) in enumerate(cases.items()):
        target = forged(run, tmp / f"ckpt{i}", **how)
        for command in ("sample", "eval") if "FIFO" in name else ("sample",):
            argv = [*RNNKIT, command, str(target)] + (["--length", "10"] * (command == "sample"))
            ok, detail = refused(measured(argv, timeout=20), limit_mb=bound)
            results.append((f"{name} ({command})", ok, detail))
    return results


def onnx_attacks(run: Path, tmp: Path) -> list[tuple]:
    import onnx
    from onnx import TensorProto, helper

    clean_file = tmp / "clean.onnx"
    exported = measured([*RNNKIT, "export", str(run), "--format", "onnx", "-o", str(clean_file)])
    if exported["code"] != 0:
        return [("export (baseline)", False, exported["stderr"][-200:])]
    clean = measured([*RNNKIT, "sample", str(clean_file), "--length", "10"])
    model = onnx.load(str(clean_file))
    graph = model.graph
    out = graph.output[0]
    hidden_name = out.name + "_before_bomb"
    for node in graph.node:  # the output is now computed into hidden_name, then + sum(bomb)
        node.output[:] = [hidden_name if o == out.name else o for o in node.output]
    shape = helper.make_tensor("bomb_shape", TensorProto.INT64, [2], [16384, 16384])
    graph.initializer.append(shape)
    graph.node.extend([
        helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb"]),
        helper.make_node("ReduceSum", ["bomb"], ["bomb_sum"], keepdims=0),
        helper.make_node("Add", [hidden_name, "bomb_sum"], [out.name]),
    ])  # fmt: skip
    bomb = tmp / "bomb.onnx"
    onnx.save(model, str(bomb))
    size_kb = bomb.stat().st_size / 1024
    result = measured([*RNNKIT, "sample", str(bomb), "--length", "10"], timeout=60)
    ok, detail = refused(result, limit_mb=clean["peak_mb"] + MARGIN_MB)
    return [(f"ConstantOfShape 16384x16384 in a {size_kb:.0f} KB .onnx", ok, detail)]


def run_attacks(tmp: Path) -> list[tuple]:
    out = tmp / "contested"
    first = subprocess.Popen([*RNNKIT, "train", "--preset", "tiny", "--out", str(out),
                              "--max-steps", "100000", "--eval-every", "50", "--threads", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=ENV)  # fmt: skip
    deadline = time.time() + 60
    while not (out / "last").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.1)
    results = []
    for name, extra in (("second train --out same", ["--out", str(out)]),
                        ("train --resume while training", ["--resume", str(out)])):  # fmt: skip
        argv = [*RNNKIT, "train", "--preset", "tiny", *extra, "--max-steps", "10", "--threads", "1"]
        ok, detail = refused(measured(argv, timeout=60))
        if first.poll() is not None:
            ok, detail = False, f"the first trainer ended before the attack ({detail})"
        results.append((name, ok, detail))
    first.send_signal(signal.SIGINT)  # Ctrl-C: the first trainer saves and exits 130
    _, err = first.communicate(timeout=120)
    rows = (out / "metrics.csv").read_text().splitlines()[1:] if out.exists() else []
    keys = [(int(r.split(",")[0]), r.split(",")[2]) for r in rows if r.split(",")[0].isdigit()]
    steps = [step for step, _ in keys]  # one train row per logged step, one val row per eval
    intact = first.returncode == 130 and steps == sorted(steps) and len(keys) == len(set(keys))
    detail = f"first trainer exit {first.returncode}, {len(steps)} rows in order: {intact}"
    results.append(
        ("first trainer untouched", intact, detail + (err.decode()[-200:] * (not intact)))
    )
    return results


# --- the server ----------------------------------------------------------------------------


class Server:
    """``rnnkit serve RUN --port 0`` in a child with ``nofile`` descriptors; its stderr counted."""

    def __init__(self, run: Path, *flags: str, nofile: int = 1024):
        def limit():
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))

        argv = [*RNNKIT, "serve", str(run), "--port", "0", "--log-level", "warning", *flags]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, env=ENV, preexec_fn=limit)
        line = self.proc.stderr.readline().decode()
        match = re.search(r"http://([\d.]+):(\d+)", line)
        if not match:
            raise SystemExit(f"the server did not start: {line}")
        self.address = (match.group(1), int(match.group(2)))
        self.log_bytes = 0
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.time() + 60
        while self.get("/health")[0] != 200:
            if time.time() > deadline:
                raise SystemExit("the server did not answer /health within a minute")
            time.sleep(0.1)

    def _drain(self) -> None:
        while chunk := self.proc.stderr.read1(65536):
            self.log_bytes += len(chunk)

    def rss_mb(self, field: str = "VmRSS") -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024

    def get(self, path: str, timeout: float = 5.0) -> tuple[int | None, bytes]:
        try:
            with socket.create_connection(self.address, timeout=timeout) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return None, b""
        match = re.match(rb"HTTP/1.1 (\d+)", data)
        return (int(match.group(1)) if match else None), data

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def cl_te_attack(server: Server, megabytes: int = 64) -> tuple:
    """POST /generate with Content-Length: 10 AND Transfer-Encoding: chunked, then a body of
    ``megabytes`` in 1 MiB chunks: refused (400/413) without buffering it."""
    before = server.rss_mb()
    head = (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    chunk = b"%x\r\n" % 2**20 + b" " * 2**20 + b"\r\n"
    sent, status = 0, None
    with socket.create_connection(server.address, timeout=30) as s:
        try:
            s.sendall(head)
            for _ in range(megabytes):
                s.sendall(chunk)
                sent += 1
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection: what it answered is read below
        try:
            answer = s.recv(4096)
            match = re.match(rb"HTTP/1.1 (\d+)", answer)
            status = int(match.group(1)) if match else None
        except OSError:
            pass
    grown = server.rss_mb("VmHWM") - before
    ok = status in (400, 413) and grown < megabytes / 4
    detail = f"answered {status} after {sent} of {megabytes} MiB sent"
    return ("CL 10 + TE chunked body", ok, f"{detail}; peak RSS grew {grown:.0f} MiB")


def half_open_attack(
    server: Server, connections: int = 2000, wait: float = 30.0, linger: float = 12.0
) -> tuple:
    """``connections`` sockets send half a request header and stop; /health must still answer
    within ``wait`` seconds, the log must not fill with accept-error tracebacks, and ``linger``
    seconds later the server must have closed every one of them."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, connections + 512), hard))
    log_before, held = server.log_bytes, []
    for _ in range(connections):
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect(server.address)
            s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Len")
            held.append(s)
        except OSError:
            s.close()
    start, status = time.perf_counter(), None
    while status != 200 and time.perf_counter() - start < wait:
        status = server.get("/health", timeout=2)[0]
    answered = time.perf_counter() - start
    time.sleep(linger)  # past the server's --request-timeout (10 s): every half-open one closed
    closed = 0
    for s in held:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    log = server.log_bytes - log_before
    alive = server.proc.poll() is None
    ok = status == 200 and alive and log < 64 * 1024 and closed == len(held)
    detail = (
        f"{len(held)} held open, /health {status} after {answered:.1f} s, {closed} "
        f"closed by the server {linger:.0f} s later, log grew {log:,} bytes, alive: {alive}"
    )
    return f"{connections} half-open connections (server nofile 1024)", ok, detail


def server_attacks(run: Path) -> tuple[list[tuple], dict]:
    server = Server(run / "best")
    try:
        start_mb = server.rss_mb()
        results = [cl_te_attack(server)]
        results.append(half_open_attack(server))
        docs = {path: server.get(path)[0] for path in ("/docs", "/redoc", "/openapi.json")}
        results.append(("/docs, /redoc, /openapi.json", set(docs.values()) == {404},
                        ", ".join(f"{p} {s}" for p, s in docs.items())))  # fmt: skip
        memory = {"server_rss_start_mb": start_mb, "server_peak_rss_mb": server.rss_mb("VmHWM"),
                  "server_rss_end_mb": server.rss_mb()}  # fmt: skip
    finally:
        server.stop()
    return results, memory


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS))
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results, memory = [], {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        print("training a tiny model to attack ...", flush=True)
        run = train_tiny(tmp / "run")
        for group in args.only:
            print(f"-- {group}", flush=True)
            if group == "server":
                found, memory = server_attacks(run)
            elif group == "files":
                found = file_attacks(run, tmp)
            elif group == "onnx":
                found = onnx_attacks(run, tmp)
            else:
                found = run_attacks(tmp)
            for name, ok, detail in found:
                print(f"{'PASS' if ok else 'FAIL'}  {name:48s} {detail}", flush=True)
            results += found
    if memory:
        print("server RSS: start {server_rss_start_mb:.0f} MiB, peak {server_peak_rss_mb:.0f} MiB, "
              "end {server_rss_end_mb:.0f} MiB".format(**memory))  # fmt: skip
    failed = [name for name, ok, _ in results if not ok]
    print(f"{len(results) - len(failed)} of {len(results)} attacks refused as promised")
    if args.json:
        rows = [{"attack": n, "passed": ok, "detail": d} for n, ok, d in results]
        Path(args.json).write_text(json.dumps({"results": rows, **memory}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
