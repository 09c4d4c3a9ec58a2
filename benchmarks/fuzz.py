"""Fuzz the loaders with atheris: any input is accepted or refused with a one-line UserError.

Three targets, each fuzzed in its own child process (coverage-guided, rnnkit instrumented):

    checkpoint  the fuzz bytes pick a valid tiny checkpoint of one of the seven tasks and
                rewrite its files: config.json (the run config or task meta changed at one
                JSON path, or raw bytes), model.safetensors / training.safetensors (header
                fields changed, bytes flipped, cut, or raw), vocab.json / training.json (one
                JSON path changed, or raw); the listed sha256 digests are forged to match, as
                an attacker would. Then ``read_run_checkpoint(training=True)`` and ``load_task``.
    vocab       ``Vocab.from_json`` (char, byte) and ``TokenVocab.from_json`` on fuzzed JSON;
                what is accepted must round-trip its own symbols through encode/decode.
    config      ``RunConfig.from_dict`` + ``validate`` on fuzzed dicts of known sections/keys.

Any other exception, or a message with a newline, is a crash: atheris prints it, the input is
kept under ``runs/fuzz/`` (ignored by git) and the run fails. Printed per target: inputs,
refused, accepted, seconds, inputs per second. ``--replay FILE...`` runs kept inputs once each
through one target, without fuzzing (``tests/fuzz_regressions/`` holds those that once crashed,
replayed by the test suite).

    python benchmarks/fuzz.py                          # 100,000 inputs per target
    python benchmarks/fuzz.py --runs 2000              # a smoke run
    python benchmarks/fuzz.py --target checkpoint --runs 300000
    python benchmarks/fuzz.py --target config --replay runs/fuzz/config-crash-*
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = ("checkpoint", "vocab", "config")
FILES = ("model.safetensors", "vocab.json", "training.json", "training.safetensors")
WORDS = (
    "lstm gru rnn char byte word lm classify $tensor $items $tuple $dict $int $float F32 I64 U8 "
    "BOOL F4 shape dtype data_offsets __metadata__ <pad> <unk> <bos> <eos> a"
).split() + [""]
#: names a message may quote: line breaks, NUL, a line separator, a long one
ODD_NAMES = ["\n", "a\nb", "\r", "\x00", "\u2028", "é", "x" * 5000]
NUMBERS = [0, 1, -1, 2, 3, 4, 8, 255, 256, 2**31, 2**53, 2**63, 2**64, 10**9, 10**18, 10**400]


# --- fuzzed values --------------------------------------------------------------------------


def fuzz_value(fdp, depth: int = 0) -> object:
    """A JSON-like value drawn from the fuzz bytes, biased towards edge cases."""
    kind = fdp.ConsumeIntInRange(0, 11 if depth < 4 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-3, 70)
    if kind == 3:
        number = fdp.PickValueInList(NUMBERS)
        return -number if fdp.ConsumeBool() else number
    if kind == 4:
        return fdp.ConsumeFloat()  # inf, nan, subnormals included
    if kind == 5:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 12))
    if kind in (6, 7):
        return fdp.PickValueInList(WORDS)
    if kind in (8, 9):
        return [fuzz_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if kind == 10:
        size = fdp.ConsumeIntInRange(0, 3)
        return {fdp.PickValueInList(WORDS): fuzz_value(fdp, depth + 1) for _ in range(size)}
    return [fdp.ConsumeIntInRange(0, 64) for _ in range(fdp.ConsumeIntInRange(0, 4))]


def mutate_json(fdp, obj: object) -> object:
    """Replace, delete or wrap the value at one path of ``obj`` (a fresh copy)."""
    obj = json.loads(json.dumps(obj))
    paths: list[tuple[object, object]] = []
    stack = [obj]
    while stack and len(paths) < 5000:
        node = stack.pop()
        keys = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            paths.append((node, key))
            if isinstance(node[key], dict | list):
                stack.append(node[key])
    if not paths:
        return fuzz_value(fdp)
    node, key = paths[fdp.ConsumeIntInRange(0, len(paths) - 1)]
    action = fdp.ConsumeIntInRange(0, 5)
    if action == 0 and isinstance(node, dict):
        del node[key]
    elif action == 1:
        node[key] = [node[key]]
    elif action == 2 and isinstance(node, dict):
        node[fdp.PickValueInList(WORDS)] = fuzz_value(fdp)
    else:
        node[key] = fuzz_value(fdp)
    return obj


def mutate_bytes(fdp, data: bytes) -> bytes:
    """Flip a few bytes, then maybe cut or extend."""
    out = bytearray(data or b"\0")
    for _ in range(fdp.ConsumeIntInRange(1, 8)):
        out[fdp.ConsumeIntInRange(0, len(out) - 1)] = fdp.ConsumeIntInRange(0, 255)
    if fdp.ConsumeBool():
        out = out[: fdp.ConsumeIntInRange(0, len(out))]
    elif fdp.ConsumeBool():
        out += fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    return bytes(out)


def mutate_safetensors(fdp, data: bytes) -> bytes:
    """Change one field of the JSON header; the length field is right or fuzzed."""
    n = int.from_bytes(data[:8], "little")
    header = mutate_json(fdp, json.loads(data[8 : 8 + n]))
    raw = json.dumps(header, allow_nan=True).encode()
    length = len(raw) if fdp.ConsumeIntInRange(0, 7) else fdp.ConsumeIntInRange(0, 2**64 - 1)
    return length.to_bytes(8, "little") + raw + data[8 + n :]


# --- seeds: one valid tiny checkpoint per task ------------------------------------------------


def build_seeds(root: Path) -> list[dict[str, bytes]]:
    """Each seed is {file name: bytes} of a checkpoint that loads."""
    import torch

    from rnnkit.config import RunConfig, validate
    from rnnkit.data.tokens import SPECIALS
    from rnnkit.tasks import get_task
    from rnnkit.tasks.saved import load_task, save_run_checkpoint

    tokens = [*SPECIALS, "a", "b", "c", " "]
    metas = {
        "lm": {"vocab_kind": "char", "symbols": list("\n abc")},
        "classify": {"labels": ["neg", "pos"], "vocab": tokens, "tokenizer": "char"},
        "tag": {"words": tokens, "chars": tokens, "tags": ["DET", "NOUN"]},
        "seq2seq": {"source": tokens, "target": tokens, "tokenizer": "char", "attention": True},
        "generate-from": {"kind": "class", "labels": ["x", "y"], "vocab": tokens},
        "forecast": {"columns": ["a", "b"], "mean": [0.0, 1.0], "std": [1.0, 2.0]},
        "frames": {"frame_size": 8, "frames": 4, "channels": 1},
    }
    seeds = []
    for i, (name, meta) in enumerate(metas.items()):
        model = {"embed": 4, "hidden": 4, "layers": 1 + i % 2, "vocab_size": 5}
        config = RunConfig.from_dict({"model": model, "task": {"name": name}})
        validate(config)
        torch.manual_seed(i)
        task = get_task(name)(config, meta)
        net = task.build_model()
        opt = torch.optim.Adam(net.parameters())
        sum(p.square().sum() for p in net.parameters()).backward()
        opt.step()
        state = {"optimizer": opt.state_dict(), "step": 1, "rng": torch.get_rng_state()[:16]}
        save_run_checkpoint(root / name, config, net, task, state)
        load_task(root / name)  # a seed must load
        seeds.append({p.name: p.read_bytes() for p in (root / name).iterdir()})
    byte = dict(seeds[0])  # the byte-level language model: another vocab.json
    meta = json.loads(byte["config.json"])
    meta["config"]["vocab_kind"], meta["config"]["model"]["vocab_size"] = "byte", 256
    byte["vocab.json"] = json.dumps([chr(b) for b in range(256)]).encode()
    seeds.append(byte)
    return seeds


def forge(files: dict[str, bytes]) -> dict[str, bytes]:
    """Rewrite config.json's digests to match the (mutated) files, as an attacker can."""
    try:
        meta = json.loads(files["config.json"])
        listed = meta["files"]
        for name in FILES:
            if name in files and isinstance(listed, dict):
                listed[name] = hashlib.sha256(files[name]).hexdigest()
        files["config.json"] = json.dumps(meta, ensure_ascii=False).encode("utf-8", "replace")
    except (ValueError, KeyError, TypeError, IndexError):
        pass
    return files


def checkpoint_input(fdp, seeds: list[dict[str, bytes]]) -> dict[str, bytes]:
    files = dict(seeds[fdp.ConsumeIntInRange(0, len(seeds) - 1)])
    for name in FILES:
        action = fdp.ConsumeIntInRange(0, 9)
        if action == 1:
            files[name] = mutate_bytes(fdp, files[name])
        elif action == 2:
            files[name] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256))
        elif action in (3, 4) and name.endswith(".json"):
            value = mutate_json(fdp, json.loads(files[name]))
            files[name] = json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
        elif action in (3, 4):
            files[name] = mutate_safetensors(fdp, files[name])
        elif action == 5:
            del files[name]
    action = fdp.ConsumeIntInRange(0, 5)
    if action in (1, 2, 3):  # the run config, task meta or vocab_kind: one JSON path
        meta = json.loads(files["config.json"])
        meta["config"] = mutate_json(fdp, meta["config"])
        files["config.json"] = json.dumps(meta, allow_nan=True).encode("utf-8", "surrogatepass")
    files = forge(files)
    if action == 4:
        files["config.json"] = mutate_bytes(fdp, files["config.json"])
    elif action == 5:
        files["config.json"] = mutate_json_bytes(fdp, files["config.json"])
    return files


def mutate_json_bytes(fdp, data: bytes) -> bytes:
    """The outer config.json changed at one path (format, version, files ...)."""
    value = mutate_json(fdp, json.loads(data))
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


# --- the child: one target under atheris ------------------------------------------------------


def child(target: str, runs: int, workdir: Path, replay: list[str] | None = None) -> None:
    import atheris
    import torch  # imported before instrumentation: only rnnkit is instrumented

    with atheris.instrument_imports(include=["rnnkit"]):
        from rnnkit.config import SECTIONS, RunConfig, validate
        from rnnkit.data.tokens import SPECIALS, TokenVocab
        from rnnkit.data.vocab import Vocab
        from rnnkit.errors import UserError
        from rnnkit.tasks.options import option_classes, task_options
        from rnnkit.tasks.saved import load_task, read_run_checkpoint

    torch.set_num_threads(1)
    fields = {name: list(cls.__dataclass_fields__) for name, cls in SECTIONS.items()}
    fields["task"] = [
        "name",
        *(f for cls in option_classes().values() for f in cls.__dataclass_fields__),
    ]
    seeds = build_seeds(workdir / "seeds") if target == "checkpoint" else []
    folder = workdir / "ckpt"
    counts = {"inputs": 0, "refused": 0, "accepted": 0}
    start = time.perf_counter()

    def attempt(call) -> bool:
        """True if accepted; a UserError must be one line; anything else propagates."""
        try:
            call()
            return True
        except UserError as error:
            message = str(error)
            if "\n" in message or not message or len(message) > 2000:
                raise AssertionError(f"not a one-line error: {message[:500]!r}") from None
            return False

    def run_checkpoint(fdp) -> bool:
        files = checkpoint_input(fdp, seeds)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
        ok = attempt(lambda: read_run_checkpoint(folder, training=True))
        return attempt(lambda: load_task(folder)) and ok

    def run_vocab(fdp) -> bool:
        shape = fdp.ConsumeIntInRange(0, 4)
        if shape == 0:  # distinct characters: often a valid char vocabulary
            data = list(dict.fromkeys(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))))
        elif shape == 1:  # the specials and distinct words: often a valid token vocabulary
            words = [fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 4)) for _ in range(8)]
            data = list(dict.fromkeys([*SPECIALS, *words]))
        elif shape == 2:
            data = [fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 2)) for _ in range(40)]
            data = data[: fdp.ConsumeIntInRange(0, 40)]
        elif shape == 3:  # the byte vocabulary, one symbol changed
            data = [chr(b) for b in range(256)]
            data[fdp.ConsumeIntInRange(0, 255)] = fuzz_value(fdp)
        else:
            data = fuzz_value(fdp)
        if fdp.ConsumeIntInRange(0, 3) == 0:
            data = mutate_json(fdp, data) if isinstance(data, list | dict) else data
        kind = fdp.PickValueInList(["char", "char", "byte", "word", None])
        accepted = False

        def char_or_byte() -> None:
            vocab = Vocab.from_json(kind, data)
            text = "".join(vocab.symbols) if vocab.kind == "char" else "any text, é"
            if vocab.decode(vocab.encode(text)) != text:
                raise AssertionError(f"round trip failed for {data!r}")

        def tokens() -> None:
            vocab = TokenVocab.from_json(data)
            if vocab.decode(vocab.encode(vocab.symbols), strip=False) != vocab.symbols:
                raise AssertionError(f"token round trip failed for {data!r}")

        accepted |= attempt(char_or_byte)
        accepted |= attempt(tokens)
        return accepted

    def run_config(fdp) -> bool:
        data: object = {}
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            section = fdp.PickValueInList([*fields, "bogus", None, *ODD_NAMES])
            if section is None:  # any text as a section name
                section = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 12))
            keys = fields.get(section, ["x"]) + ["bogus", None, *ODD_NAMES]
            values = data.setdefault(section, {})
            for _ in range(fdp.ConsumeIntInRange(0, 3)):
                key = fdp.PickValueInList(keys)
                key = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 12)) if key is None else key
                values[key] = fuzz_value(fdp)
        if fdp.ConsumeIntInRange(0, 9) == 0:
            data = fuzz_value(fdp)

        def load() -> None:
            config = RunConfig.from_dict(data, source="config.json")
            validate(config)
            task_options(config)  # the [task] keys: the named task's options, and every other's
            if RunConfig.from_dict(config.to_dict()) != config:
                raise AssertionError("to_dict/from_dict is not a round trip")

        return attempt(load)

    body = {"checkpoint": run_checkpoint, "vocab": run_vocab, "config": run_config}[target]

    def test_one_input(data: bytes) -> None:
        accepted = body(atheris.FuzzedDataProvider(data))
        counts["inputs"] += 1
        counts["accepted" if accepted else "refused"] += 1
        if counts["inputs"] >= runs:
            seconds = time.perf_counter() - start
            print(json.dumps({"target": target, **counts, "seconds": round(seconds, 1)}))
            sys.stdout.flush()
            os._exit(0)

    if replay:  # each kept input once, through the same target: a crash propagates
        for name in replay:
            counts["inputs"] += 1
            counts["accepted" if body(atheris.FuzzedDataProvider(Path(name).read_bytes())) else
                   "refused"] += 1  # fmt: skip
        seconds = round(time.perf_counter() - start, 3)
        print(json.dumps({"target": target, **counts, "seconds": seconds}))
        sys.stdout.flush()
        os._exit(0)
    args = [sys.argv[0], f"-runs={runs + 100}", "-max_len=4096", "-timeout=60", "-seed=1"]
    args += [f"-artifact_prefix={workdir}/", "-print_final_stats=0"]
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


# --- the parent: one child per target, a table ------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--target", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs once each")
    args = parser.parse_args()
    if args.replay and not args.child and len(args.target) != 1:
        parser.error("--replay needs exactly one --target")
    missing = [name for name in args.replay or [] if not Path(name).is_file()]
    if missing:
        parser.error(f"--replay: no such file: {missing[0]}")
    if args.child:
        child(args.child, args.runs, Path(args.workdir), args.replay)
        return 1  # not reached: the child exits after --runs inputs
    failed = 0
    print(f"{'target':<12}{'inputs':>9}{'refused':>9}{'accepted':>10}{'seconds':>9}{'per s':>8}")
    for target in args.target:
        with tempfile.TemporaryDirectory(prefix=f"rnnkit-fuzz-{target}-") as workdir:
            command = [sys.executable, __file__, "--child", target, "--runs", str(args.runs)]
            command += ["--replay", *map(os.path.abspath, args.replay)] if args.replay else []
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            result = subprocess.run(
                [*command, "--workdir", workdir], capture_output=True, text=True, env=env
            )
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode != 0 or not lines:
                failed += 1
                crashes = sorted(Path(workdir).glob("crash-*"))
                kept = Path("runs") / "fuzz"
                kept.mkdir(parents=True, exist_ok=True)
                for crash in crashes:  # keep the input that crashed, out of the source tree
                    shutil.copy(crash, kept / f"{target}-{crash.name}")
                found = f"{len(crashes)} input(s) in {kept}/"
                print(f"{target:<12}CRASH (exit {result.returncode}); {found}")
                print(result.stderr[-4000:], file=sys.stderr)
                continue
            r = json.loads(lines[-1])
            rate = f"{r['inputs'] / r['seconds']:>8.0f}" if r["seconds"] >= 0.1 else f"{'-':>8}"
            print(
                f"{target:<12}{r['inputs']:>9,}{r['refused']:>9,}{r['accepted']:>10,}"
                f"{r['seconds']:>9.1f}{rate}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
