"""PyTorch's own test data for nn.RNN / nn.GRU / nn.LSTM, run against rnnkit's classes.

The inputs and error inputs are torch's ``ModuleInfo`` entries, imported from the installed
``torch.testing._internal.common_modules`` (``module_inputs_func``, ``module_error_inputs_func``
and each input's ``reference_fn``) -- not copied. For every input: rnnkit's layer, holding the
weights of a torch.nn layer, gives torch.nn's output and final state on both paths, matches the
input's reference function, and (in float64) torch.nn's gradients. For every error input:
torch.nn's exception type, and the very same message. torch's ``test_nn.py`` and
``test_modules.py`` do not ship in the wheel, so what they check of these entries is done here
over the same data: forward + reference, gradients, ``state_dict`` both ways, pickling, factory
kwargs, repr.
"""

from __future__ import annotations

import copy
import pickle
import re

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

import rnnkit

pytest.importorskip("expecttest", reason="torch.testing._internal needs expecttest (.[dev])")
common_modules = pytest.importorskip("torch.testing._internal.common_modules")
ModuleErrorEnum = common_modules.ModuleErrorEnum

OURS = {nn.RNN: rnnkit.RNN, nn.GRU: rnnkit.GRU, nn.LSTM: rnnkit.LSTM}
INFOS = {info.module_cls: info for info in common_modules.module_db if info.module_cls in OURS}
IMPLS = ("fused", "cells")


def module_inputs(cls, dtype, requires_grad=True):
    """torch's inputs for ``cls``, with its packed-sequence samples where it has them."""
    info = INFOS[cls]
    options = dict(device="cpu", dtype=dtype, requires_grad=requires_grad, training=True)
    samples = info.module_inputs_func(info, **options)
    if cls is not nn.LSTM:  # torch's RNN/GRU inputs can add PackedSequence samples
        packed = info.module_inputs_func(info, with_packed_sequence=True, **options)
        samples += [s for s in packed if isinstance(s.forward_input.args[0], PackedSequence)]
    return samples


def build_pair(cls, sample, dtype, impl):
    """A torch.nn layer built from the sample's constructor input, and rnnkit's with its weights."""
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    torch.manual_seed(0)
    theirs = cls(*args, **kwargs).to(dtype)
    ours = OURS[cls](*args, **kwargs, impl=impl).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def leaves(value):
    """The tensors of an output ``(out, h)`` / ``(out, (h, c))``, packed data unpacked."""
    if isinstance(value, PackedSequence):
        return [value.data]
    if isinstance(value, tuple | list):
        return [t for v in value for t in leaves(v)]
    return [value]


def fresh(args):
    """The sample's forward inputs, detached copies with their own gradients."""
    return copy.deepcopy(args)


@pytest.fixture(scope="module", params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cls", list(OURS), ids=lambda c: c.__name__)
def test_module_inputs_match_torch_and_the_reference(cls, impl, dtype):
    tol = {"atol": 1e-10, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 1e-5, "rtol": 1e-4}
    for sample in module_inputs(cls, dtype):
        ours, theirs = build_pair(cls, sample, dtype, impl)
        for mode in ("train", "eval"):  # train_and_eval_differ: both, like torch's tests
            getattr(ours, mode)(), getattr(theirs, mode)()
            args = sample.forward_input.args
            expected = leaves(theirs(*fresh(args)))
            got = leaves(ours(*fresh(args)))
            assert type(ours(*fresh(args))[1]) is type(theirs(*fresh(args))[1])  # tuple, Tensor
            for a, b in zip(got, expected, strict=True):
                torch.testing.assert_close(a, b, **tol)
            if sample.reference_fn is not None and not isinstance(args[0], PackedSequence):
                reference = leaves(sample.reference_fn(ours, *fresh(args)))
                for a, b in zip(got, reference, strict=True):
                    torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cls", list(OURS), ids=lambda c: c.__name__)
def test_gradients_match_torch(cls, impl):
    for sample in module_inputs(cls, torch.float64):
        ours, theirs = build_pair(cls, sample, torch.float64, impl)
        grads = []
        for layer in (ours, theirs):
            args = fresh(sample.forward_input.args)
            sum(t.sum() for t in leaves(layer(*args))).backward()
            inputs = [t for t in leaves(args) if t.requires_grad]
            grads.append([p.grad for p in layer.parameters()] + [t.grad for t in inputs])
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("cls", list(OURS), ids=lambda c: c.__name__)
def test_error_inputs_raise_torchs_exceptions_and_messages(cls):
    info = INFOS[cls]
    errors = info.module_error_inputs_func(
        info, device="cpu", dtype=torch.float32, requires_grad=False, training=True
    )
    assert errors, "torch ships error inputs for this module"
    for error in errors:
        sample = error.module_error_input
        raised = []
        for make in (cls, OURS[cls]):
            with pytest.raises(error.error_type) as caught:
                layer = make(*sample.constructor_input.args, **sample.constructor_input.kwargs)
                assert error.error_on == ModuleErrorEnum.FORWARD_ERROR, "should not construct"
                layer(*sample.forward_input.args, **sample.forward_input.kwargs)
            assert re.search(error.error_regex, str(caught.value))
            raised.append((type(caught.value), str(caught.value)))
        assert raised[1] == raised[0]  # the same type and, word for word, the same message


@pytest.mark.parametrize("cls", list(OURS), ids=lambda c: c.__name__)
def test_torch_nn_interface(cls):
    """What torch's generic module tests check of these entries: the class, ``mode``, repr,
    ``state_dict`` both ways, pickling, deepcopy and factory kwargs."""
    sample = module_inputs(cls, torch.float32)[1]
    args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
    ours, theirs = OURS[cls](*args, **kwargs), cls(*args, **kwargs)
    assert isinstance(ours, cls) and isinstance(ours, nn.RNNBase)
    assert ours.mode == theirs.mode and repr(ours) == repr(theirs)
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert [[p.shape for p in g] for g in ours.all_weights] == [
        [p.shape for p in g] for g in theirs.all_weights
    ]
    theirs.load_state_dict(ours.state_dict())  # and the other way round (build_pair)
    x = sample.forward_input.args
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert type(clone) is type(ours)
        for a, b in zip(leaves(clone(*fresh(x))), leaves(theirs(*fresh(x))), strict=True):
            torch.testing.assert_close(a, b)
    meta = OURS[cls](*args, **kwargs, device="meta", dtype=torch.float64)
    assert all(p.device.type == "meta" and p.dtype == torch.float64 for p in meta.parameters())
