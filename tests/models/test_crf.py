"""The linear-chain CRF (rnnkit.models.crf) against brute force: every tag sequence of tiny
inputs enumerated in float64 gives log Z, the sentence score and the Viterbi argmax; gradcheck
of the NLL; padding never changes a sentence's figures."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.models.crf import LinearChainCRF


def random_crf(num_tags: int, seed: int) -> LinearChainCRF:
    torch.manual_seed(seed)
    crf = LinearChainCRF(num_tags).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def brute_score(crf: LinearChainCRF, emissions: torch.Tensor, path: tuple[int, ...]) -> float:
    """s(y) written out term by term, for one sentence (n, T) and its path."""
    s = crf.start[path[0]] + crf.end[path[-1]]
    for t, tag in enumerate(path):
        s = s + emissions[t, tag]
        if t:
            s = s + crf.transitions[path[t - 1], tag]
    return float(s.detach())


def brute_force(crf: LinearChainCRF, emissions: torch.Tensor) -> tuple[float, tuple, float]:
    """(log Z, best path, its score) over every path of one sentence (n, T)."""
    n, T = emissions.shape
    scores = {p: brute_score(crf, emissions, p) for p in itertools.product(range(T), repeat=n)}
    best = max(scores, key=scores.get)
    log_z = float(torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0))
    return log_z, best, scores[best]


def padded_batch(seed: int, num_tags: int, n: int = 5, longest: int = 4):
    """Random emissions (N, L, T) in float64, random lengths in [1, L] (the longest = L), and
    random tags with -100 past each length."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, longest + 1, (n,), generator=g)
    lengths[0] = longest
    emissions = torch.randn(n, longest, num_tags, generator=g, dtype=torch.float64)
    tags = torch.randint(0, num_tags, (n, longest), generator=g)
    tags[torch.arange(longest) >= lengths.unsqueeze(1)] = -100
    return emissions, lengths, tags


@pytest.mark.parametrize("num_tags, seed", [(1, 0), (2, 1), (3, 2), (5, 3)])
def test_log_partition_score_and_viterbi_equal_brute_force(num_tags, seed):
    crf = random_crf(num_tags, seed)
    emissions, lengths, tags = padded_batch(seed, num_tags)
    log_z = crf.log_partition(emissions, lengths).detach()
    score = crf.score(emissions, tags, lengths).detach()
    nll = crf(emissions, tags, lengths).detach()
    paths, best = crf.decode(emissions, lengths)
    assert paths.shape == tags.shape and log_z.dtype == torch.float64
    for i, n in enumerate(lengths.tolist()):
        want_z, want_path, want_best = brute_force(crf, emissions[i, :n])
        gold = tuple(tags[i, :n].tolist())
        assert float(log_z[i]) == pytest.approx(want_z, rel=1e-12, abs=1e-12)
        assert float(score[i]) == pytest.approx(brute_score(crf, emissions[i, :n], gold), 1e-12)
        assert float(nll[i]) == pytest.approx(want_z - brute_score(crf, emissions[i], gold), 1e-9)
        assert tuple(paths[i, :n].tolist()) == want_path
        assert float(best[i]) == pytest.approx(want_best, rel=1e-12)
        assert (paths[i, n:] == paths[i, n - 1]).all()  # padding repeats the last tag


def test_probabilities_of_every_path_sum_to_one():
    crf = random_crf(3, 7)
    emissions = torch.randn(1, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([4])
    total = sum(
        float(torch.exp(-crf(emissions, torch.tensor([p]), lengths)).detach())
        for p in itertools.product(range(3), repeat=4)
    )
    assert total == pytest.approx(1.0, rel=1e-12)


def test_nll_gradcheck_over_emissions_and_every_parameter():
    crf = random_crf(3, 4)
    emissions, lengths, tags = padded_batch(4, 3, n=3, longest=4)
    emissions.requires_grad_(True)

    params = [p.detach().clone().requires_grad_(True) for p in crf.parameters()]

    def functional(e, transitions, start, end):
        """The NLL with the parameters as inputs: torch.func.functional_call keeps the graph."""
        state = {"transitions": transitions, "start": start, "end": end}
        return torch.func.functional_call(crf, state, (e, tags, lengths), strict=True)

    assert torch.autograd.gradcheck(functional, (emissions, *params))
    assert torch.autograd.gradgradcheck(functional, (emissions, *params))


def test_padding_never_changes_a_sentence():
    crf = random_crf(4, 5)
    emissions, lengths, tags = padded_batch(5, 4, n=6, longest=5)
    together = crf(emissions, tags, lengths)
    paths, _ = crf.decode(emissions, lengths)
    garbage = emissions.clone()
    pad = torch.arange(5) >= lengths.unsqueeze(1)
    garbage[pad] = float("nan")  # anything at padded positions: never read
    torch.testing.assert_close(crf(garbage, tags, lengths), together)
    assert crf.decode(garbage, lengths)[0].tolist() == paths.tolist()
    clean, dirty = emissions.requires_grad_(True), garbage.requires_grad_(True)
    (g_clean,) = torch.autograd.grad(crf(clean, tags, lengths).sum(), clean)
    (g_dirty,) = torch.autograd.grad(crf(dirty, tags, lengths).sum(), dirty)
    torch.testing.assert_close(g_dirty, g_clean)  # zero at padding, no NaN leaks in
    for i, n in enumerate(lengths.tolist()):
        alone = crf(emissions[i : i + 1, :n], tags[i : i + 1, :n], lengths[i : i + 1])
        torch.testing.assert_close(alone[0], together[i])
        path, _ = crf.decode(emissions[i : i + 1, :n], lengths[i : i + 1])
        assert path[0].tolist() == paths[i, :n].tolist()


def test_zero_transitions_make_viterbi_the_per_position_argmax():
    crf = LinearChainCRF(5)  # starts at zero: a per-position softmax
    emissions = torch.randn(3, 6, 5)
    lengths = torch.tensor([6, 2, 4])
    paths, _ = crf.decode(emissions, lengths)
    argmax = emissions.argmax(-1)
    for i, n in enumerate(lengths.tolist()):
        assert paths[i, :n].tolist() == argmax[i, :n].tolist()
    log_softmax = emissions.log_softmax(-1)
    tags = argmax
    want = torch.stack(
        [-log_softmax[i, :n].gather(1, tags[i, :n, None]).sum() for i, n in enumerate([6, 2, 4])]
    )
    torch.testing.assert_close(crf(emissions, tags, lengths), want)


@pytest.mark.parametrize(
    "emissions, lengths, message",
    [
        (torch.zeros(2, 3, 4), torch.tensor([1, 3]), r"emissions must be \(N, L, 3\)"),
        (torch.zeros(2, 3, 3), torch.tensor([0, 3]), r"must be \(N,\) = \(2,\) in \[1, 3\]"),
        (torch.zeros(2, 3, 3), torch.tensor([4, 3]), r"in \[1, 3\], got \[4, 3\]"),
        (torch.zeros(2, 3, 3), torch.tensor([3]), r"lengths must be \(N,\)"),
    ],
)
def test_bad_shapes_are_refused(emissions, lengths, message):
    with pytest.raises(ValueError, match=message):
        LinearChainCRF(3).log_partition(emissions, lengths)
    with pytest.raises(ValueError, match="num_tags must be an integer >= 1"):
        LinearChainCRF(0)
