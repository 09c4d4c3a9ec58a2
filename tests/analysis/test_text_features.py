"""text_features on hand-written strings; discover_units on traces with planted units."""

import numpy as np
import pytest
import torch

from rnnkit.analysis.activation_plots import plot_discovered_units
from rnnkit.analysis.activations import Trace, trace
from rnnkit.analysis.text_features import UnitMatch, discover_units, text_features
from rnnkit.config import ModelConfig
from rnnkit.data.vocab import Vocab
from rnnkit.errors import UserError
from rnnkit.models.language_model import LanguageModel


def bits(s: str) -> list[float]:
    return [float(c) for c in s]


def test_quotes_straight_curly_and_unclosed():
    f = text_features('a"bc"d "e')
    np.testing.assert_array_equal(f["in_quotes"], bits("011100011"))  # unclosed: open to the end
    f = text_features("x\u201cy\u201dz\u201d")
    np.testing.assert_array_equal(f["in_quotes"], bits("011000"))  # a stray close stays closed
    f = text_features('"a\nb"c')
    np.testing.assert_array_equal(f["in_quotes"], bits("111100"))  # newlines do not close


def test_nested_parens_and_unmatched_close():
    f = text_features("a(b(c)d)e)(")
    np.testing.assert_array_equal(f["paren_depth"], [0, 1, 1, 2, 2, 1, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(f["in_parens"], bits("01111110001"))


def test_lines_and_newlines():
    f = text_features("ab\ncd\n\ne")
    np.testing.assert_array_equal(f["position_in_line"], [1, 2, 0, 1, 2, 0, 0, 1])
    np.testing.assert_array_equal(f["after_newline"], bits("10010011"))
    np.testing.assert_array_equal(f["newline"], bits("00100110"))
    np.testing.assert_array_equal(f["space"], bits("00100110"))


def test_comments_for_code():
    text = 'x = 1  # c "q"\ns = "a#b" // d\ny'
    f = text_features(text)
    expected = "00000001111111" + "0" + "00000000000111" + "0" + "0"
    assert len(expected) == len(text)
    np.testing.assert_array_equal(f["in_comment"], bits(expected))
    only_slashes = text_features("a#b//c\nd", comment_prefixes=("//",))["in_comment"]
    np.testing.assert_array_equal(only_slashes, bits("00001100"))
    assert not text_features("# x", comment_prefixes=())["in_comment"].any()


def test_character_classes_and_words():
    f = text_features("Hi, yo2 Ae")
    np.testing.assert_array_equal(f["vowel"], bits("0100010011"))
    np.testing.assert_array_equal(f["upper"], bits("1000000010"))
    np.testing.assert_array_equal(f["in_word"], bits("1100110011"))
    np.testing.assert_array_equal(f["position_in_word"], [1, 2, 0, 0, 1, 2, 0, 0, 1, 2])
    np.testing.assert_array_equal(f["digit"], bits("0000001000"))
    np.testing.assert_array_equal(f["punctuation"], bits("0010000000"))
    assert all(v.dtype == np.float64 and v.shape == (10,) for v in f.values())
    assert all(v.shape == (0,) for v in text_features("").values())


@pytest.mark.parametrize("prefixes", ["#", ("#", ""), (3,)])
def test_bad_comment_prefixes_are_refused(prefixes):
    with pytest.raises(UserError, match="comment_prefixes"):
        text_features("a", comment_prefixes=prefixes)


def fake_trace(text: str, hidden: list[np.ndarray], cell_state=None) -> Trace:
    L = len(text)
    return Trace(
        text,
        "lstm" if cell_state else "gru",
        hidden,
        cell_state,
        [{}] * len(hidden),
        [[]] * L,
        np.full(L, np.nan),
        np.zeros(L, dtype=np.int64),
        np.zeros((L, 3)),
    )


def test_planted_units_are_found_with_r_one():
    rng = np.random.default_rng(0)
    text = 'say "hello" (to (the)) world\n' * 8
    f = text_features(text)
    L = len(text)
    h0 = rng.normal(size=(L, 5)) * 0.5
    h0[:, 3] = 2.5 * f["in_quotes"] - 1.0  # an affine copy
    h1 = rng.normal(size=(L, 4))
    c1 = rng.normal(size=(L, 4))
    c1[:, 2] = -0.3 * f["paren_depth"] + 7  # a negated copy, in an LSTM cell state
    c1[:, 0] = 0.25  # a dead unit
    tr = fake_trace(text, [h0, h1], [rng.normal(size=(L, 5)), c1])
    matches = discover_units(
        tr,
        {
            "in_quotes": f["in_quotes"],
            "paren_depth": f["paren_depth"],
            "in_comment": f["in_comment"],
            "noise": rng.normal(size=L),
        },
    )
    assert [m.feature for m in matches] == ["in_quotes"] * 3 + ["noise"] * 3 + ["paren_depth"] * 3
    first = {m.feature: m for m in reversed(matches)}
    assert first["in_quotes"][:4] == ("in_quotes", 0, "h", 3)
    assert first["in_quotes"].r == pytest.approx(1.0, abs=1e-12)
    assert first["paren_depth"].key == (1, "c", 2)
    assert first["paren_depth"].r == pytest.approx(-1.0, abs=1e-12)
    assert abs(first["noise"].r) < 0.35  # 18 noise units against 232 positions
    for feature in ("in_quotes", "paren_depth"):
        rs = [abs(m.r) for m in matches if m.feature == feature]
        assert rs == sorted(rs, reverse=True) and rs[1] < 0.5
    assert (1, "c", 0) not in {m.key for m in matches}  # constant unit skipped


def test_pearson_r_equals_numpy_corrcoef():
    rng = np.random.default_rng(1)
    L = 50
    hidden = rng.normal(size=(L, 6))
    feature = rng.normal(size=L) + hidden[:, 4]
    [match] = discover_units(fake_trace("x" * L, [hidden]), {"f": feature}, top=1)
    expected = [np.corrcoef(hidden[:, j], feature)[0, 1] for j in range(6)]
    assert match.unit == int(np.argmax(np.abs(expected)))
    assert match.r == pytest.approx(expected[match.unit], abs=1e-12)


def test_discover_units_defaults_and_refusals():
    text = "ab cd\nef"
    tr = fake_trace(text, [np.random.default_rng(2).normal(size=(len(text), 3))])
    matches = discover_units(tr)  # default features of the text; constant ones skipped
    names = {m.feature for m in matches}
    assert "in_quotes" not in names and "in_parens" not in names and "space" in names
    assert all(isinstance(m, UnitMatch) for m in matches)
    assert discover_units(fake_trace("aa", [np.ones((2, 3))])) == []  # every unit constant
    with pytest.raises(UserError, match="top"):
        discover_units(tr, top=0)
    with pytest.raises(UserError, match=r"features\['f'\] must have shape \(8,\)"):
        discover_units(tr, {"f": np.zeros(5)})
    with pytest.raises(UserError, match="min_std"):
        discover_units(tr, min_std=-1.0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_discovered_units_plot_writes_a_png(tmp_path, cell):
    text = 'x = f("a", (b))  # c\n' * 10
    vocab = Vocab.from_text_chars(text)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(vocab), embed=4, hidden=6, layers=2, cell=cell)
    tr = trace(LanguageModel(config).eval(), vocab, text)
    matches = discover_units(tr, top=2)
    path = plot_discovered_units(tr, matches, tmp_path / "d.png", feature_limit=3, span=40)
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000
    with pytest.raises(UserError, match="matches is empty"):
        plot_discovered_units(tr, [], tmp_path / "x.png")
    with pytest.raises(UserError, match="features"):
        plot_discovered_units(tr, [UnitMatch("nope", 0, "h", 0, 0.5)], tmp_path / "x.png")
