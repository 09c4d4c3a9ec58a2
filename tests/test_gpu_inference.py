"""Inference on CUDA gives the CPU's numbers (``gpu`` marker: skipped, saying why, without a
CUDA device; ``benchmarks/gpu_check.sh`` runs them on a GPU machine).

Every task's ``evaluate`` on CUDA equals the CPU's within 1e-4 (fp32: TF32 is switched off for
the comparison, as it rounds matrix products to 10-bit mantissas); generation runs batched on
the device for 1 and 64 streams and a seed repeats its text there; greedy and width-1 beam
decoding pick the CPU's tokens; ``load_task`` puts every tensor on the device; ``serve`` on
CUDA answers; ``rnnkit eval --device cuda`` scores what ``--device cpu`` scores; and the
evaluation loops wait for the GPU as often for one batch as for all of them (their figures are
summed on the device and read once), counted with ``torch.cuda.set_sync_debug_mode``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from rnnkit.config import RunConfig
from rnnkit.generation import generate
from rnnkit.tasks import get_task
from rnnkit.tasks.saved import load_model, load_task

pytestmark = pytest.mark.gpu
FIXTURE = Path(__file__).parent / "fixtures" / "release-0.1.0-lm"
CUDA = torch.device("cuda", 0)
NAMES = {
    "Italian": ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo"],
    "Japanese": ["Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Nakamura"],
    "Russian": ["Ivanov", "Smirnov", "Kuznetsov", "Popov", "Sokolov", "Lebedev", "Kozlov"],
}
SMALL = {"embed": 8, "hidden": 16, "layers": 2}
TASKS = ("lm", "classify", "generate-from", "tag", "seq2seq", "forecast", "frames")


@pytest.fixture(autouse=True)
def fp32():
    """Full fp32 on the GPU for the comparisons (cuDNN's default allows TF32); restored."""
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = cudnn


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("gpu"), copies=1)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """Data whose validation split takes several evaluation batches in every task."""
    return write_data(tmp_path_factory.mktemp("gpu-big"), copies=50)


def write_data(root: Path, copies: int) -> Path:
    (root / "text.txt").write_text(
        "".join(f"{w} {v} the {o}.\n" for w in NAMES["Italian"] for v in ("saw", "met")
                for o in ("sea", "hill", "town")) * 4
    )  # fmt: skip
    names = root / "names"
    names.mkdir()
    for label, words in NAMES.items():
        (names / f"{label}.txt").write_text("\n".join(words * 4 * copies) + "\n")
    sentences = (
        [
            [("the", "DET"), ("cat", "NOUN"), ("sat", "VERB"), (".", "PUNCT")],
            [("a", "DET"), ("dog", "NOUN"), ("ran", "VERB"), ("home", "ADV"), (".", "PUNCT")],
        ]
        * 15
        * copies
    )
    blocks = [
        "\n".join(f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\t_\t_\t_" for i, (w, t) in enumerate(s, 1))
        for s in sentences
    ]
    (root / "tags.conllu").write_text("\n\n".join(blocks) + "\n\n")
    (root / "copies").write_text(str(copies))
    return root


def task_config(name: str, root: Path) -> RunConfig:
    paths = {"lm": "text.txt", "classify": "names", "generate-from": "names", "tag": "tags.conllu"}
    data = {"paths": [str(root / paths[name])]} if name in paths else {}
    options, copies = {}, int((root / "copies").read_text())
    if name == "seq2seq":
        data, options = {"synthetic": "reverse", "synthetic_size": 200}, {"max_len": 12}
    elif name == "forecast":
        data = {"synthetic": "sine", "synthetic_size": 400 * copies}
        options = {"window": 16, "horizon": 4}
    elif name == "frames":
        data = {"synthetic": "shapes", "synthetic_size": 24 * copies}
        options = {"frame_size": 8, "frames": 5}
    model = {**SMALL, "hidden": 4, "layers": 1} if name == "frames" else SMALL
    config = RunConfig.from_dict({
        "task": {"name": name},
        "data": {**data, "cache_dir": str(root / "cache")},
        "model": model,
        "train": {"batch_size": 8, "seq_len": 16, "seed": 3},
    })  # fmt: skip
    config.task.options.update(options)
    return config


def prepared(name: str, root: Path):
    """The task, prepared, and a freshly initialised model of it on the CPU (seeded)."""
    task = get_task(name)(task_config(name, root))
    task.prepare()
    torch.manual_seed(0)
    return task, task.build_model().eval()


def assert_close(cpu: dict, cuda: dict) -> None:
    assert set(cuda) == set(cpu)
    for key, value in cpu.items():
        if isinstance(value, float):
            assert cuda[key] == pytest.approx(value, rel=1e-4, abs=1e-4, nan_ok=True), key
        else:
            assert cuda[key] == value, key


@pytest.mark.parametrize("name", TASKS)
def test_evaluate_on_cuda_equals_the_cpu(data, name):
    task, model = prepared(name, data)
    on_cpu = task.evaluate(model, "val")
    on_cuda = task.evaluate(copy.deepcopy(model).to(CUDA), "val")
    assert_close(on_cpu, on_cuda)
    assert math.isfinite(on_cuda["loss"])


def test_load_task_puts_every_tensor_on_the_device():
    task, model, _ = load_task(FIXTURE, CUDA)
    assert all(t.device == CUDA for t in (*model.parameters(), *model.buffers()))
    model, vocab, _ = load_model(FIXTURE, "cuda")
    assert next(model.parameters()).device.type == "cuda"


@pytest.mark.parametrize("streams", [1, 64])
def test_generation_runs_batched_on_the_device_and_a_seed_repeats(streams):
    model, vocab, _ = load_model(FIXTURE, CUDA)
    settings = {"prime": "ROMEO:", "length": 120, "seed": 7, "num_samples": streams}
    texts = generate(model, vocab, **settings)
    assert len(texts) == streams and all(len(t) == 120 for t in texts)
    assert generate(model, vocab, **settings) == texts
    pieces = []
    if streams == 1:  # streaming reads the ids once per step: the same text in pieces
        assert generate(model, vocab, **settings, on_text=pieces.append) == texts
        assert "".join(pieces) == texts[0]


def test_greedy_generation_on_cuda_is_the_cpu_text():
    model, vocab, _ = load_model(FIXTURE)
    settings = {"prime": "ROMEO:", "length": 60, "temperature": 0}
    assert generate(model.to(CUDA), vocab, **settings) == generate(model.cpu(), vocab, **settings)


@pytest.mark.parametrize("how", ["greedy", "beam"])
def test_seq2seq_decoding_on_cuda_picks_the_cpu_tokens(data, how):
    from rnnkit.data.batching import pad
    from rnnkit.data.tokens import PAD

    task, model = prepared("seq2seq", data)
    sources = task.splits["val"].src[:16]
    src, lengths = pad(sources, PAD)
    with torch.no_grad():
        on_cpu = task.decode(model, src, lengths, how, beam_width=1)
        on_cuda = task.decode(copy.deepcopy(model).to(CUDA), src.to(CUDA), lengths, how, 1)
    assert on_cuda == on_cpu


def test_forecast_roll_out_on_cuda_equals_the_cpu(data):
    task, model = prepared("forecast", data)
    window = task.norm["val"][None, :16]  # (1, 16, C)
    with torch.no_grad():
        on_cpu = model.forecast(window, 12)
        on_cuda = copy.deepcopy(model).to(CUDA).forecast(window.to(CUDA), 12)
    assert on_cuda.device == CUDA
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-4, atol=1e-5)


def test_generations_in_threads_share_the_gpu_as_serve_runs_them():
    """What ``serve``'s workers do (without FastAPI, which the GPU machine lacks): seeded
    generations from several threads at once on one CUDA model give each its text alone."""
    from concurrent.futures import ThreadPoolExecutor

    model, vocab, _ = load_model(FIXTURE, CUDA)
    seeds = [1, 2, 3, 4, 1]
    alone = [generate(model, vocab, prime="ROMEO:", length=80, seed=s)[0] for s in seeds]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(
            lambda s: generate(model, vocab, prime="ROMEO:", length=80, seed=s)[0], seeds
        ))  # fmt: skip
    assert together == alone and alone[0] == alone[4] and len(set(alone)) == 4


def test_serve_on_cuda_answers_a_request():
    pytest.importorskip("fastapi", reason="rnnkit[serve] is not installed")
    pytest.importorskip("httpx", reason="rnnkit[serve]'s tests need httpx")
    import httpx

    from rnnkit.serve.app import Limits, create_app

    model, vocab, config = load_model(FIXTURE, CUDA)
    app = create_app(model, vocab, config, Limits(max_concurrent=2, queue=2))

    async def ask():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
            body = {"prime": "ROMEO:", "length": 50, "seed": 4}
            answers = await asyncio.gather(*(http.post("/generate", json=body) for _ in range(3)))
            return (await http.get("/model")).json(), answers

    about, answers = asyncio.run(ask())
    assert about["device"].startswith("cuda:0 (")
    texts = [a.json() for a in answers]
    assert all(a.status_code == 200 for a in answers) and texts[0]["chars"] == 50
    assert texts[0] == texts[1] == texts[2]  # concurrent requests on one GPU: same seed, text
    assert texts[0]["text"] == generate(model, vocab, prime="ROMEO:", length=50, seed=4)[0]


def test_eval_command_on_cuda_scores_what_the_cpu_scores(data, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(data / "cache"))  # here and in the command
    env = dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-m", "rnnkit", "eval", str(FIXTURE), str(data / "text.txt"), "--json",
         "--device", "cuda"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    on_cuda = json.loads(done.stdout)
    task, model, _ = load_task(FIXTURE)  # the same figures on the CPU, in process
    on_cpu = task.evaluate_paths(model, [str(data / "text.txt")])
    assert on_cuda.pop("device").startswith("cuda:0 (")
    # the command runs with torch's defaults, where cuDNN may use TF32: 1e-3, not 1e-4
    assert on_cuda["loss"] == pytest.approx(on_cpu["loss"], rel=1e-3)
    assert on_cuda["chars"] == on_cpu["chars"]


def _syncs(task, model, max_batches: int) -> int:
    """How many times ``task.evaluate`` waits for the GPU (torch's sync debug warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            task.evaluate(model, "val", max_batches)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("name", ["classify", "generate-from", "tag", "forecast", "frames"])
def test_evaluation_waits_for_the_gpu_as_often_for_one_batch_as_for_all(big, name):
    task, model = prepared(name, big)
    model = model.to(CUDA)
    task.evaluate(model, "val", 1)  # warm-up: first-use allocations and kernels
    one, every = _syncs(task, model, 1), _syncs(task, model, 0)
    assert every == one, f"{name}: {one} syncs for one batch, {every} for the whole split"
