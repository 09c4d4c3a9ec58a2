"""The forecaster's output distributions: what its head's numbers mean and how they are scored.

    lik = make_likelihood("studentt")            # or "point" (mse/mae), "gaussian", "quantile"
    params = lik.constrain(raw, last)            # raw (N, L, C, P) head outputs -> parameters
    nll = lik.loss(params, target)               # (N, L, C), what training minimises
    median, draw = lik.point(params), lik.sample(params)      # (N, L, C) each

Every location is residual: it is ``last`` (the value the step read) plus a head output, so a
fresh model starts near "no change". Scales are ``softplus(.) + MIN_SCALE`` (positive), the
Student-t degrees of freedom ``2 + softplus(.) + MIN_SCALE`` (above 2: a finite variance).
Losses come from ``torch.distributions`` (negative log-likelihood) or, for quantiles, the
pinball loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Normal, StudentT

#: the smallest scale, in normalised units: keeps the NLL finite on a constant stretch
MIN_SCALE = 1e-3
LIKELIHOODS = ("point", "gaussian", "studentt", "quantile")


class Likelihood:
    """A point forecast trained on ``loss`` ("mse" or "mae"): one number per channel."""

    name = "point"
    params = 1  # head outputs per channel
    sampled = False  # multi-step paths are sampled (True) or follow the point forecast
    quantile_levels: tuple[float, ...] = ()

    def __init__(self, loss: str = "mse") -> None:
        self.loss_kind = loss

    def constrain(self, raw: Tensor, last: Tensor) -> Tensor:
        """Parameters (N, L, C, P) from the head's ``raw`` (N, L, C, P) and the values read
        ``last`` (N, L, C)."""
        return raw + last[..., None]

    def loss(self, params: Tensor, target: Tensor) -> Tensor:
        """(N, L, C): squared or absolute error of the point forecast."""
        error = params[..., 0] - target
        return error.abs() if self.loss_kind == "mae" else error.square()

    def point(self, params: Tensor) -> Tensor:
        """The forecast fed back and reported: the median of the distribution."""
        return params[..., 0]

    def sample(self, params: Tensor) -> Tensor:
        return self.point(params)

    def describe(self) -> str:
        return f"normalised {self.loss_kind.upper()}"


class _Parametric(Likelihood):
    """A location-scale family: params[..., 0] the location, [..., 1] the scale (, [..., 2]
    the Student-t degrees of freedom)."""

    sampled = True

    def distribution(self, params: Tensor) -> Distribution:
        raise NotImplementedError

    def constrain(self, raw: Tensor, last: Tensor) -> Tensor:
        loc = raw[..., 0] + last
        scale = F.softplus(raw[..., 1]) + MIN_SCALE
        rest = [2.0 + F.softplus(raw[..., 2]) + MIN_SCALE] if self.params == 3 else []
        return torch.stack([loc, scale, *rest], dim=-1)

    def loss(self, params: Tensor, target: Tensor) -> Tensor:
        """(N, L, C): -log p(target | params)."""
        return -self.distribution(params).log_prob(target)

    def sample(self, params: Tensor) -> Tensor:
        return self.distribution(params).sample()

    def describe(self) -> str:
        return f"{self.name} NLL (normalised units)"


class Gaussian(_Parametric):
    """y ~ N(mu, sigma^2): mu = last + a, sigma = softplus(b) + MIN_SCALE."""

    name, params = "gaussian", 2

    def distribution(self, params: Tensor) -> Distribution:
        return Normal(params[..., 0], params[..., 1])


class StudentTLikelihood(_Parametric):
    """y ~ mu + sigma t_nu: mu = last + a, sigma = softplus(b) + MIN_SCALE, nu = 2 +
    softplus(c) + MIN_SCALE (heavy tails, a finite variance)."""

    name, params = "studentt", 3

    def distribution(self, params: Tensor) -> Distribution:
        return StudentT(params[..., 2], params[..., 0], params[..., 1])


class Quantile(Likelihood):
    """Q quantiles q_j = last + a_j at ``levels`` tau_j, trained on the pinball loss

        rho_tau(y - q) = max(tau (y - q), (tau - 1)(y - q)),   averaged over the levels;

    the 0.5 level is the point forecast. Multi-step paths are sampled like the parametric
    families' (ancestral sampling), each step's draw taken from the piecewise-linear quantile
    function through the predicted quantiles (as Gasthaus et al. 2019, "Probabilistic
    forecasting with spline quantile function RNNs"), so the interval widens with the horizon;
    feeding back the median would keep every step's interval as narrow as the first."""

    name = "quantile"
    sampled = True

    def __init__(self, levels: tuple[float, ...]) -> None:
        super().__init__("quantile")
        self.quantile_levels = tuple(levels)
        self.params = len(levels)
        self.median = self.quantile_levels.index(0.5)
        self.tau = torch.tensor(self.quantile_levels)

    def loss(self, params: Tensor, target: Tensor) -> Tensor:
        return pinball(params, target, self.tau.to(params)).mean(dim=-1)

    def point(self, params: Tensor) -> Tensor:
        return params[..., self.median]

    def sample(self, params: Tensor) -> Tensor:
        """One draw per (N, L, C) by inverse transform: u ~ U(0, 1) through the quantile
        function that joins (tau_j, q_j) with straight lines, its end segments extended to
        u = 0 and u = 1 (bounded tails). The q_j are sorted first: the pinball loss does not
        keep them from crossing."""
        q = params.sort(dim=-1).values
        if q.size(-1) == 1:  # the median alone: no spread to sample
            return q[..., 0]
        tau = self.tau.to(q)
        u = torch.rand(q.shape[:-1], dtype=q.dtype, device=q.device)
        j = (torch.searchsorted(tau, u, right=True) - 1).clamp(0, len(tau) - 2)
        q0 = q.gather(-1, j[..., None])[..., 0]
        q1 = q.gather(-1, j[..., None] + 1)[..., 0]
        return q0 + (u - tau[j]) * (q1 - q0) / (tau[j + 1] - tau[j])

    def describe(self) -> str:
        return "quantile (pinball) loss (normalised units)"


def pinball(quantiles: Tensor, target: Tensor, tau: Tensor) -> Tensor:
    """(..., Q): rho_tau(y - q) for ``quantiles`` (..., Q), ``target`` (...), ``tau`` (Q,)."""
    diff = target[..., None] - quantiles
    return torch.maximum(tau * diff, (tau - 1) * diff)


def make_likelihood(
    name: str, loss: str = "mse", quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
) -> Likelihood:
    """The likelihood called ``name`` (one of LIKELIHOODS)."""
    if name == "gaussian":
        return Gaussian()
    if name == "studentt":
        return StudentTLikelihood()
    if name == "quantile":
        return Quantile(tuple(quantiles))
    if name == "point":
        return Likelihood(loss)
    raise ValueError(f"unknown likelihood {name!r}; use one of {', '.join(LIKELIHOODS)}")
