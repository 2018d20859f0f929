"""The optax-style chains of adambook.transforms are adambook's optimizers, to rounding.

Each chain is run against adambook.Adam / adambook.AdamW on one fixed gradient stream
(open loop, so that a rounding difference is never fed back through the gradient).
One step rounds each coordinate about eight times in each implementation, in a
different order, so after T steps the two may differ by about 16 T u of the
parameters' size; with T = 200 and u = 2^-53 that is below 4e-13, and the tests allow
1e-12 relative (float64). The float32 case allows the same count of roundings with
u = 2^-24.
"""

import math

import pytest
import torch

import adambook
from adambook import transforms as T

STEPS = 200


def stream(d=6, seed=0, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-3, 3, d, dtype=dtype)
    return [(torch.randn(d, generator=gen, dtype=dtype) * scales).to(device)
            for _ in range(STEPS)]


def run_chain(opt, theta0, grads):
    theta = [t.clone() for t in theta0] if isinstance(theta0, list) else theta0.clone()
    state = opt.init(theta)
    for g in grads:
        updates, state = opt.update(g, state, theta)
        theta = T.apply_updates(theta, updates)
    return theta


def run_class(make, theta0, grads):
    p = torch.nn.Parameter(theta0.clone())
    opt = make([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def rtol(dtype):
    return 16 * STEPS * torch.finfo(dtype).eps / 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "chain,make",
    [
        (lambda: T.adam(1e-2), lambda ps: adambook.Adam(ps, lr=1e-2)),
        (lambda: T.adam_l2(1e-2, 0.1), lambda ps: adambook.Adam(ps, lr=1e-2, weight_decay=0.1)),
        (lambda: T.adamw(1e-2, 0.1), lambda ps: adambook.AdamW(ps, lr=1e-2, weight_decay=0.1)),
    ],
    ids=["adam", "adam_l2", "adamw"],
)
def test_chain_equals_optimizer(chain, make, dtype, device):
    grads = stream(dtype=dtype, device=device)
    theta0 = torch.linspace(-1, 1, 6, dtype=dtype, device=device)
    got = run_chain(chain(), theta0, grads)
    want = run_class(make, theta0, grads)
    scale = want.abs().max().item()
    assert (got - want).abs().max().item() <= rtol(dtype) * scale


def test_the_decay_link_is_what_differs():
    """Moving add_decayed_weights across scale_by_adam turns Adam + L2 into AdamW."""
    grads = stream()
    theta0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    before = T.chain(T.add_decayed_weights(0.1), T.scale_by_adam(), T.scale_by_learning_rate(1e-2))
    after = T.chain(T.scale_by_adam(), T.add_decayed_weights(0.1), T.scale_by_learning_rate(1e-2))
    l2 = run_class(lambda ps: adambook.Adam(ps, lr=1e-2, weight_decay=0.1), theta0, grads)
    w = run_class(lambda ps: adambook.AdamW(ps, lr=1e-2, weight_decay=0.1), theta0, grads)
    assert torch.allclose(run_chain(before, theta0, grads), l2, rtol=1e-12, atol=0)
    assert torch.allclose(run_chain(after, theta0, grads), w, rtol=1e-12, atol=0)
    assert (l2 - w).abs().max() > 1e-3  # and the two are far apart


def test_paper_parametrization_is_torch_with_lambda_over_alpha():
    """Loshchilov & Hutter's λ is torch's λ times the learning rate α."""
    grads = stream()
    theta0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    alpha, lam_paper = 3e-3, 2e-4

    def cosine(count):
        return 0.5 * (1 + math.cos(math.pi * count / STEPS))

    paper = run_chain(T.adamw_paper(alpha, lam_paper, cosine), theta0, grads)
    torch_form = run_chain(T.adamw(lambda c: alpha * cosine(c), lam_paper / alpha), theta0, grads)
    assert torch.allclose(paper, torch_form, rtol=rtol(torch.float64), atol=1e-300)


def test_rows_with_their_own_hyperparameters_are_independent_runs():
    grads = stream(d=3)
    lrs = torch.tensor([[1e-3], [1e-2], [3e-2]], dtype=torch.float64)
    lams = torch.tensor([[0.0], [0.1], [1.0]], dtype=torch.float64)
    theta0 = torch.linspace(-1, 1, 3, dtype=torch.float64)
    rows = run_chain(T.adamw(lrs, lams), theta0.expand(3, 3), [g.expand(3, 3) for g in grads])
    for i in range(3):
        single = run_chain(T.adamw(lrs[i, 0].item(), lams[i, 0].item()), theta0, grads)
        assert torch.allclose(rows[i], single, rtol=1e-14, atol=0)


def test_lists_of_tensors():
    grads = stream(d=4)
    theta0 = [torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    out = run_chain(T.adamw(1e-2, 0.1), theta0, [[g[:2], g[2:]] for g in grads])
    flat = run_chain(T.adamw(1e-2, 0.1), torch.cat(theta0), grads)
    assert torch.equal(torch.cat(out), flat)


def test_decay_needs_the_parameters():
    opt = T.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="needs the parameters"):
        opt.update(torch.ones(2), opt.init(torch.ones(2)), None)


def test_adam_decay_rows_are_adam_l2_and_adamw_bit_for_bit():
    grads = stream(d=3)
    lrs = torch.tensor([[1e-3], [1e-2], [3e-2]], dtype=torch.float64)
    lams = torch.tensor([[0.1], [1.0], [3.0]], dtype=torch.float64)
    theta0 = torch.linspace(-1, 1, 3, dtype=torch.float64).expand(3, 3)
    rows = [g.expand(3, 3) for g in grads]
    zero = torch.zeros_like(lams)
    both = run_chain(T.adam_decay(torch.cat([lrs, lrs]), torch.cat([lams, zero]),
                                  torch.cat([zero, lams])),
                     torch.cat([theta0, theta0]), [torch.cat([g, g]) for g in rows])
    assert torch.equal(both[:3], run_chain(T.adam_l2(lrs, lams), theta0, rows))
    assert torch.equal(both[3:], run_chain(T.adamw(lrs, lams), theta0, rows))
