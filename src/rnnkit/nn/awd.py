"""The AWD-LSTM regularisers as library pieces (Merity, Keskar and Socher 2017, "Regularizing
and Optimizing LSTM Language Models", arXiv:1708.02182).

* :class:`WeightDrop` -- DropConnect (Wan et al. 2013) on the hidden-to-hidden matrices, one
  mask per forward call, so the fused kernel still runs;
* :class:`LockedDropout` -- variational dropout (Gal and Ghahramani 2016): one mask per
  sequence and feature, the same at every time step;
* :func:`embedding_dropout` -- drops whole words: rows of the embedding matrix;
* :func:`activation_regularisation` (AR) and :func:`temporal_activation_regularisation` (TAR),
  the two penalties added to the loss.

Each piece is the identity (or zero, for AR/TAR with a zero coefficient) in eval mode or at
rate 0. A bad rate or coefficient raises a one-line :class:`~rnnkit.errors.UserError`.
"""

from __future__ import annotations

import math
import numbers

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from rnnkit.errors import UserError, short

__all__ = [
    "LockedDropout",
    "WeightDrop",
    "activation_regularisation",
    "embedding_dropout",
    "temporal_activation_regularisation",
]


def _check_rate(name: str, p: object) -> float:
    """``p`` as a float if it is a dropout rate in [0, 1); a UserError naming ``name`` otherwise
    (p = 1 would drop everything and divide by zero in the 1/(1-p) scaling)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise UserError(f"{name} must be a dropout rate in [0, 1), got {short(p)}")
    return float(p)


def _check_coefficient(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number >= 0; a UserError naming ``name`` else."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise UserError(f"{name} must be a finite number >= 0, got {short(value)}")
    return float(value)


def _keep_mask(like: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
    """A Bernoulli(1 - p) mask of ``shape`` scaled by 1/(1 - p), on ``like``'s device/dtype."""
    keep = 1.0 - p
    return like.new_empty(shape).bernoulli_(keep).div_(keep)


class WeightDrop(nn.Module):
    """DropConnect on a recurrent layer's hidden-to-hidden matrices (AWD-LSTM's weight drop).

    Merity et al. 2017, section 4.1, after Wan et al. 2013 (DropConnect): in training, each
    matrix ``W_hh`` named in ``names`` is replaced, for one forward call, by

        W_hh' = (M ⊙ W_hh) / (1 - p),    M_ij ~ Bernoulli(1 - p) independently,

    where ``⊙`` is the elementwise product and ``M`` is drawn ONCE per call: every time step of
    every sequence in the batch uses the same dropped matrix (unlike dropout on ``h_{t-1}``,
    which draws per step). E[W_hh'] = W_hh. The layer's own ``forward`` runs on ``W_hh'`` through
    :func:`torch.func.functional_call` -- for rnnkit's RNN/LSTM/GRU the fused kernel (torch's
    ``RNNBase.__setattr__`` keeps ``_flat_weights`` in step) or the cells path alike, and any
    other module whose parameters are named ``weight_hh*`` (torch.nn.LSTM, LayerNormLSTM,
    IndRNN's diagonal ``weight_hh``). Gradients flow to the undropped ``W_hh`` (zero where ``M``
    is 0) and to every other parameter. In eval mode, or with ``p = 0``, the layer runs as it is.

    ``names`` (default: every parameter of ``layer`` whose name starts with ``weight_hh``) are
    the parameters to drop. The wrapper adds no parameter and renames none: its ``state_dict``
    has exactly the layer's keys, so a checkpoint saved with the wrapper loads into the bare
    layer and back. Attributes it lacks (``hidden_size``, ``num_layers``, ``state_spec`` ...)
    are read from the layer.

    .. note:: AWD-LSTM's original code keeps the matrix under ``weight_hh_l0_raw`` and writes
       the dropped one into the module before each call; here nothing is renamed or written.
       On CUDA torch's fused kernel warns that the weights are not one contiguous chunk (it
       then copies them each call), as with the original.
    """

    def __init__(self, layer: nn.Module, p: float, names: tuple[str, ...] | None = None):
        super().__init__()
        self.p = _check_rate("WeightDrop p", p)
        own = dict(layer.named_parameters())
        if names is None:
            names = tuple(name for name in own if name.startswith("weight_hh"))
            if not names:
                raise UserError(
                    f"WeightDrop needs a layer with weight_hh_* parameters; "
                    f"{type(layer).__name__} has none"
                )
        else:
            names = (names,) if isinstance(names, str) else tuple(names)
            missing = [name for name in names if name not in own]
            if missing or not names:
                raise UserError(
                    f"WeightDrop names must be parameters of {type(layer).__name__}, got "
                    f"{short(missing or names)}"
                )
        self.layer = layer
        self.names = names
        self._register_state_dict_hook(_strip_prefix)
        self._register_load_state_dict_pre_hook(_add_prefix, with_module=True)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            layer = self.__dict__.get("_modules", {}).get("layer")  # none while unpickling
            if layer is None:
                raise
            return getattr(layer, name)

    def extra_repr(self) -> str:
        return f"p={self.p}, names={self.names!r}"

    def masks(self) -> dict[str, Tensor]:
        """Draw one mask ``M / (1 - p)`` per dropped matrix, in ``names`` order (what one
        training forward multiplies the matrices by)."""
        own = dict(self.layer.named_parameters())
        return {name: _keep_mask(own[name], tuple(own[name].shape), self.p) for name in self.names}

    def forward(self, *args, **kwargs):
        """The layer's ``forward(*args, **kwargs)`` over the dropped matrices (training, p > 0)
        or over its own (eval, p = 0)."""
        if not self.training or self.p == 0:
            return self.layer(*args, **kwargs)
        own = dict(self.layer.named_parameters())
        dropped = {name: own[name] * mask for name, mask in self.masks().items()}
        return functional_call(self.layer, dropped, args, kwargs)


def _strip_prefix(module: WeightDrop, state_dict, prefix: str, local_metadata) -> None:
    """state_dict hook: ``prefix + 'layer.' + key`` -> ``prefix + key`` (the layer's own keys)."""
    inner = prefix + "layer."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)
    # the layer's metadata entry (torch writes it under "<prefix>layer")
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None and inner[:-1] in metadata:
        metadata[prefix[:-1] if prefix else ""] = metadata.pop(inner[:-1])


def _add_prefix(module: WeightDrop, state_dict, prefix: str, *_args) -> None:
    """load_state_dict pre-hook: ``prefix + key`` -> ``prefix + 'layer.' + key`` for the layer's
    keys (a checkpoint of the bare layer, or of the wrapper, which has the same keys)."""
    own = module.layer.state_dict(keep_vars=True)
    for key in own:
        if prefix + key in state_dict:
            state_dict[prefix + "layer." + key] = state_dict.pop(prefix + key)


class LockedDropout(nn.Module):
    """Variational ("locked") dropout over time (Gal and Ghahramani 2016, as AWD-LSTM uses it
    between layers and on the embeddings and outputs, Merity et al. 2017 section 4.2).

        y_t = x_t ⊙ m / (1 - p),    m_nj ~ Bernoulli(1 - p), one per sequence n and feature j,

    the same ``m`` at every time step t (ordinary dropout draws a fresh mask per step). Input
    (L, N, H) -- or (N, L, H) with ``batch_first=True`` -- or unbatched (L, H). E[y] = x. In eval
    mode, or with ``p = 0``, ``y = x``.
    """

    def __init__(self, p: float, batch_first: bool = False):
        super().__init__()
        self.p = _check_rate("LockedDropout p", p)
        self.batch_first = batch_first

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", batch_first=True" if self.batch_first else "")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.dim() == 2:
            shape = (1, x.size(1))
        elif x.dim() == 3:
            shape = (x.size(0), 1, x.size(2)) if self.batch_first else (1, x.size(1), x.size(2))
        else:
            raise ValueError(f"LockedDropout: expected a 2-D or 3-D input, got {x.dim()}-D")
        return x * _keep_mask(x, shape, self.p)


def embedding_dropout(
    embedding: nn.Embedding, words: Tensor, p: float, training: bool = True
) -> Tensor:
    """Embed ``words`` with whole words dropped (AWD-LSTM's ``embedded_dropout``; Gal and
    Ghahramani 2016, section 4, Merity et al. 2017 section 4.3).

        E' = diag(m) E / (1 - p),    m_v ~ Bernoulli(1 - p), one per vocabulary entry v,

    then ``E'[words]``: a dropped word's vector is zero at every occurrence in the batch, a kept
    one is scaled by 1/(1 - p). ``embedding``'s own options (padding_idx, max_norm, sparse ...)
    apply as in its forward. Not training, or ``p = 0``: ``embedding(words)``.
    """
    p = _check_rate("embedding dropout p", p)
    if not training or p == 0:
        return embedding(words)
    weight = embedding.weight
    dropped = weight * _keep_mask(weight, (weight.size(0), 1), p)
    return F.embedding(
        words,
        dropped,
        embedding.padding_idx,
        embedding.max_norm,
        embedding.norm_type,
        embedding.scale_grad_by_freq,
        embedding.sparse,
    )


def activation_regularisation(outputs: Tensor, alpha: float) -> Tensor:
    """AR (Merity et al. 2017, section 4.6): ``alpha * mean(h_t ** 2)`` over every time step,
    sequence and unit of ``outputs`` -- the last layer's outputs AFTER dropout, as in the paper.
    ``alpha = 0``: a zero scalar."""
    alpha = _check_coefficient("activation regularisation alpha", alpha)
    if alpha == 0:
        return outputs.new_zeros(())
    return alpha * outputs.pow(2).mean()


def temporal_activation_regularisation(
    outputs: Tensor, beta: float, batch_first: bool = False
) -> Tensor:
    """TAR (Merity et al. 2017, section 4.6): ``beta * mean((h_t - h_{t-1}) ** 2)`` over
    t = 2..L, every sequence and unit of ``outputs`` (L, N, H), or (N, L, H) with
    ``batch_first`` -- the last layer's outputs BEFORE dropout, as in the paper. ``beta = 0``,
    or a single step (no difference to take): a zero scalar."""
    beta = _check_coefficient("temporal activation regularisation beta", beta)
    time = 1 if batch_first else 0
    steps = outputs.size(time)
    if beta == 0 or steps < 2:
        return outputs.new_zeros(())
    diff = outputs.narrow(time, 1, steps - 1) - outputs.narrow(time, 0, steps - 1)
    return beta * diff.pow(2).mean()
