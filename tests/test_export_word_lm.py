"""Word and BPE language models beyond PyTorch: ``rnnkit export`` writes the vocabulary (the
word list, the tokenizer's JSON) into the ONNX file, ``rnnkit sample --runtime onnx`` reads it
back and decodes as the PyTorch path does, a hostile vocabulary in the file is a one-line
error, and ``rnnkit serve`` encodes prompts and decodes answers for both."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from rnnkit.cli import main as rnnkit_main  # noqa: E402
from rnnkit.config import RunConfig, apply_overrides  # noqa: E402
from rnnkit.data import BpeVocab, WordVocab  # noqa: E402
from rnnkit.errors import UserError  # noqa: E402
from rnnkit.export import OnnxLanguageModel  # noqa: E402
from rnnkit.generation import generate  # noqa: E402
from rnnkit.tasks import get_task  # noqa: E402
from rnnkit.tasks.saved import load_model, save_run_checkpoint  # noqa: E402

LINES = [
    f"{who} saw the {what} by {when} ."
    for who in ("anna", "bruno", "carla", "dario")
    for what in ("moon", "river", "tower", "café", "ζῷον")
    for when in ("night", "day", "夜")
]
TOKENIZERS = ["word", "bpe"]


def saved_run(tmp_path, tokenizer: str):
    """A random model of ``tokenizer`` over LINES, saved as a run's checkpoint."""
    (tmp_path / "text.txt").write_text("\n".join(LINES * 3) + "\n", encoding="utf-8")
    config = RunConfig()
    settings = {
        "data": {"paths": [str(tmp_path / "text.txt")], "cache_dir": str(tmp_path / "cache"),
                 "tokenizer": tokenizer},
        "model": {"embed": 8, "hidden": 12, "layers": 2},
        "train": {"out": str(tmp_path / "run"), "seq_len": 8, "batch_size": 4, "threads": 1},
        "task": {"name": "lm", "vocab_size": 300 if tokenizer == "bpe" else 0},
    }  # fmt: skip
    apply_overrides(config, settings, "test")
    task = get_task("lm")(config)
    task.prepare()
    torch.manual_seed(0)
    model = task.build_model()
    with torch.no_grad():  # a peaked distribution: greedy text is not a tie
        for p in model.parameters():
            p.mul_(4.0)
    save_run_checkpoint(tmp_path / "ckpt", config, model, task, training=None)
    return tmp_path / "ckpt"


@pytest.fixture(scope="module", params=TOKENIZERS)
def exported(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"export_{request.param}")
    ckpt = saved_run(tmp, request.param)
    assert rnnkit_main(["export", str(ckpt), "-o", str(tmp / "m.onnx"), "--threads", "1"]) == 0
    return request.param, ckpt, tmp / "m.onnx"


def test_the_file_carries_the_vocabulary(exported):
    tokenizer, ckpt, path = exported
    torch_model, vocab, _ = load_model(ckpt)
    model = OnnxLanguageModel.from_file(path, threads=1)
    assert type(model.vocab) is {"word": WordVocab, "bpe": BpeVocab}[tokenizer]
    assert model.vocab == vocab and model.vocab.symbols == vocab.symbols
    prime = "carla saw the ζῷον"
    assert model.vocab.encode(prime).tolist() == vocab.encode(prime).tolist()
    want = generate(torch_model, vocab, prime=prime, length=12, temperature=0)
    assert generate(model, model.vocab, prime=prime, length=12, temperature=0) == want


def test_sample_on_onnx_prints_what_pytorch_prints(exported, capsys):
    tokenizer, ckpt, path = exported
    args = ["--prime", "anna saw", "--length", "15", "--temperature", "0", "--threads", "1"]
    assert rnnkit_main(["sample", str(ckpt), *args]) == 0
    on_torch = capsys.readouterr()
    assert rnnkit_main(["sample", str(path), *args]) == 0
    on_onnx = capsys.readouterr()
    assert on_onnx.out == on_torch.out and on_onnx.out.startswith("anna saw")
    assert len(on_onnx.out) > len("anna saw") + 10
    if tokenizer == "word":  # a space between the prime and the first word
        assert on_onnx.out.startswith("anna saw ")


def test_word_prime_with_unknown_words_on_onnx(exported, capsys):
    tokenizer, _, path = exported
    if tokenizer != "word":
        pytest.skip("a BPE vocabulary has every byte")
    assert rnnkit_main(["sample", str(path), "--prime", "anna wombat", "--length", "3"]) == 0
    err = capsys.readouterr().err
    assert err == "rnnkit: note: prime words not in the vocabulary read as <unk>: 'wombat'\n"


def _metadata(path, tmp_path, **changes) -> str:
    """A copy of ``path`` with metadata keys replaced."""
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        if prop.key in changes:
            prop.value = changes[prop.key]
    out = tmp_path / "changed.onnx"
    onnx.save(proto, str(out))
    return str(out)


def test_a_hostile_vocabulary_in_the_file_is_one_line(exported, tmp_path, capsys):
    tokenizer, _, path = exported
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    symbols = json.loads(meta["vocab"])
    if tokenizer == "word":
        bad = [json.dumps(["<unk>", "<eos>", "two words"]), json.dumps(symbols[::-1])]
        words = ["without spaces", "starts with <unk>, <eos>"]
    else:
        spec = json.loads(symbols[0])
        spec["decoder"] = {"type": "Metaspace"}
        bad = [json.dumps(["{broken"]), json.dumps([json.dumps(spec)])]
        words = ["the bpe tokenizer is not JSON", "decoder must be ByteLevel"]
    cases = [*zip(bad, words, strict=True), (meta["vocab"], "vocab_kind must be")]
    for vocab, message in cases:
        kind = "sentencepiece" if message == "vocab_kind must be" else tokenizer
        changed = _metadata(path, tmp_path, vocab=vocab, vocab_kind=kind)
        with pytest.raises(UserError, match=message) as error:
            OnnxLanguageModel.from_file(changed)
        assert "metadata vocab" in str(error.value) and "\n" not in str(error.value)
        assert rnnkit_main(["sample", changed, "--length", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rnnkit: error: ") and err.count("\n") == 1


# ---- serve ---------------------------------------------------------------------------------


def post(app, body: dict) -> dict:
    import httpx

    async def send():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as http:
            return await http.post("/generate", json=body)

    answer = asyncio.run(send())
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_serve_encodes_prompts_and_decodes_answers(tmp_path, tokenizer):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from rnnkit.serve.app import create_app

    model, vocab, config = load_model(saved_run(tmp_path, tokenizer))
    app = create_app(model, vocab, config, source="here")
    body = {"prime": "dario saw the", "length": 20, "seed": 3, "temperature": 0.9}
    answer = post(app, body)
    want = generate(model, vocab, prime="dario saw the", length=20, seed=3, temperature=0.9)[0]
    assert answer["text"] == want and answer["finish_reason"] == "length"
    assert answer["chars"] == len(want)
    stop = want[len(want) // 2 :][:3]  # a string the answer reaches half way
    cut = post(app, {**body, "stop": [stop]})
    assert cut["finish_reason"] == "stop" and cut["text"] == want[: want.index(stop)]
    never = post(app, {**body, "stop": ["\u2603\u2603"]})  # a snowman pair the model never writes
    assert never["finish_reason"] == "length" and never["text"] == want


class Spelling(torch.nn.Module):
    """A language model that spells ``ids`` over and over, whatever it reads: the state is
    the position. Its tokens need not be the tokenizer's own split of the text they make."""

    def __init__(self, ids: list[int], vocab_size: int) -> None:
        super().__init__()
        self.ids, self.vocab_size = ids, vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the device, for generate

    def _logits(self, position: torch.Tensor) -> torch.Tensor:
        token = torch.tensor(self.ids)[position % len(self.ids)]  # (N,)
        return 50.0 * torch.nn.functional.one_hot(token, self.vocab_size).float()  # (N, V)

    def forward(self, idx, targets=None, state=None):
        n = idx.size(0)
        position = torch.zeros(n, dtype=torch.long)
        return SimpleNamespace(logits=self._logits(position).unsqueeze(1), state=position)

    def step(self, token, state):
        return self._logits(state + 1), state + 1


def test_serve_finish_reason_counts_the_tokens_drawn_not_the_text_re_encoded(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from rnnkit.serve.app import create_app

    _, vocab, config = load_model(saved_run(tmp_path, "bpe"))
    letters = [vocab.symbols.index(c) for c in "the"]  # one byte a token: t, h, e
    assert len(vocab.encode("thethe")) < 6  # re-encoded, the text is fewer tokens
    app = create_app(Spelling(letters, len(vocab)), vocab, config)
    answer = post(app, {"length": 6, "stop": ["xyz"], "temperature": 0})
    assert answer == {**answer, "text": "thethe", "finish_reason": "length"}
    answer = post(app, {"length": 6, "stop": ["eth"], "temperature": 0})
    assert answer["text"] == "th" and answer["finish_reason"] == "stop"
    reasons: list[str] = []
    texts = generate(Spelling(letters, len(vocab)), vocab, length=4, stop=["et"],
                     temperature=0, num_samples=2, finish_reasons=reasons)  # fmt: skip
    assert texts == ["th", "th"] and reasons == ["stop", "stop"]
    generate(Spelling(letters, len(vocab)), vocab, length=4, temperature=0,
             finish_reasons=reasons)  # fmt: skip
    assert reasons == ["stop", "stop", "length"]
