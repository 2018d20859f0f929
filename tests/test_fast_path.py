"""The fast multi-tensor path equals the readable one, in every mode.

Both paths run the same elementwise operations in the same order (the foreach
kernels only batch them), so the tolerance is float rounding: 4 ulps of the dtype
relative to each tensor's scale, enough for a kernel that fuses a multiply-add.
"""

import itertools

import pytest
import torch

from adambook import functional as F


def ulps(dtype, n=4):
    return n * torch.finfo(dtype).eps


def tensors(device, seed=0):
    """Tensors of mixed shapes and dtypes, so the fast path must group them."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (5,), (), (2, 3, 2), (7,)]
    dtypes = [torch.float64, torch.float32, torch.float64, torch.float32, torch.float64]
    return [torch.randn(s, generator=gen).to(device=device, dtype=d) for s, d in zip(shapes, dtypes)]


def clone_all(ts):
    return [t.clone() for t in ts]


def assert_lists_close(xs, ys):
    for x, y in zip(xs, ys):
        tol = ulps(x.dtype) * max(1.0, y.abs().max().item())
        torch.testing.assert_close(x, y, rtol=0, atol=tol)


ADAM_MODES = list(
    itertools.product(F.WEIGHT_DECAY_MODES, [True, False], [False, True], [0.0, 0.1])
)


@pytest.mark.parametrize("mode,bias_correction,amsgrad,weight_decay", ADAM_MODES)
def test_adam_fast_path_equals_readable(mode, bias_correction, amsgrad, weight_decay, device):
    params = tensors(device)
    zeros = [torch.zeros_like(p) for p in params]
    state = {
        k: (clone_all(params), clone_all(zeros), clone_all(zeros), clone_all(zeros))
        for k in ("readable", "fast")
    }
    # Tensors at different step counts, as after a parameter that sometimes has no grad.
    offsets = [0, 0, 3, 1, 0]
    for t in range(1, 30):
        grads = tensors(device, seed=t)
        for k, foreach in (("readable", False), ("fast", True)):
            p, m, v, vmax = state[k]
            F.adam(
                p, grads, m, v, [t + o for o in offsets],
                lr=0.05, beta1=0.9, beta2=0.99, eps=1e-8,
                weight_decay=weight_decay, weight_decay_mode=mode,
                bias_correction=bias_correction, amsgrad=amsgrad,
                max_exp_avg_sqs=vmax, foreach=foreach,
            )
    for a, b in zip(state["fast"], state["readable"]):
        assert_lists_close(a, b)
    assert not torch.equal(state["fast"][0][0], params[0]), "nothing moved"


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("decoupled", [False, True])
def test_sgd_fast_path_equals_readable(momentum, decoupled, device):
    params = tensors(device)
    runs = {k: (clone_all(params), [None] * len(params)) for k in ("readable", "fast")}
    for t in range(1, 30):
        grads = tensors(device, seed=t)
        for k, foreach in (("readable", False), ("fast", True)):
            p, bufs = runs[k]
            F.sgd(p, grads, bufs, lr=0.05, momentum=momentum, weight_decay=0.1,
                  decoupled_weight_decay=decoupled, foreach=foreach)
    assert_lists_close(runs["fast"][0], runs["readable"][0])
    if momentum:
        assert_lists_close(runs["fast"][1], runs["readable"][1])


def test_unknown_weight_decay_mode_is_refused():
    p = [torch.zeros(2)]
    with pytest.raises(ValueError, match="Invalid weight_decay_mode"):
        F.adam(p, p, p, p, [1], lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
               weight_decay=0.1, weight_decay_mode="l1")
