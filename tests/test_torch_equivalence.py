"""adambook's optimizers follow torch.optim's trajectories over a realistic run.

The run has several parameter tensors of different shapes, two parameter groups
with different learning rates and weight decays, and a learning-rate schedule, for
300 steps (the schedule brings the learning rate down to 40% over them, and the averages
of beta2 = 0.999 are still far from their bias-corrected limit, so every term of
the update is exercised). torch's run of each case is made once and shared by the
readable and the foreach variant. Tolerances:

* float64: 1e-12 relative. Where the two implementations perform the same
  operations in the same order they agree exactly; the bound leaves room only for a
  kernel that contracts a multiply-add differently, a few ulps (1 ulp = 2.2e-16) per
  step, which 300 steps of a contracting optimizer do not amplify beyond 1e-12.
* float32: ``torch.testing.assert_close``'s defaults (rtol 1.3e-6, atol 1e-5).
"""

import functools

import pytest
import torch

import adambook

STEPS = 300

CASES = {
    "sgd": (adambook.SGD, torch.optim.SGD, {}),
    "sgd_momentum": (adambook.SGD, torch.optim.SGD, {"momentum": 0.9}),
    "adam": (adambook.Adam, torch.optim.Adam, {}),
    "adam_amsgrad": (adambook.Adam, torch.optim.Adam, {"amsgrad": True}),
    "adamw": (adambook.AdamW, torch.optim.AdamW, {}),
    "adamw_amsgrad": (adambook.AdamW, torch.optim.AdamW, {"amsgrad": True, "betas": (0.8, 0.99)}),
    "adam_decoupled_flag": (
        adambook.Adam,
        torch.optim.Adam,
        {"decoupled_weight_decay": True},
    ),
}


class Net(torch.nn.Module):
    """Tensors of four shapes: a conv kernel, a matrix, vectors and a scalar gain."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 3, kernel_size=3)
        self.fc = torch.nn.Linear(3 * 6, 4)
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        h = torch.tanh(self.conv(x)).flatten(1)
        return self.gain * self.fc(h)


def make_run(opt_cls, kwargs, dtype, device, seed=0):
    torch.manual_seed(seed)
    net = Net().to(device=device, dtype=dtype)
    groups = [
        {"params": [net.conv.weight, net.fc.weight], "weight_decay": 0.05},
        {"params": [net.conv.bias, net.fc.bias, net.gain], "lr": 3e-3, "weight_decay": 0.0},
    ]
    lr = 1e-2 if "sgd" not in opt_cls.__name__.lower() else 5e-2
    opt = opt_cls(groups, lr=lr, **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + t / 200.0))
    return net, opt, sched


def train(net, opt, sched, dtype, device, steps=STEPS, start=0):
    gen = torch.Generator().manual_seed(1234)
    for t in range(start + steps):
        x = torch.randn(8, 2, 8, generator=gen, dtype=dtype)
        y = torch.randn(8, 4, generator=gen, dtype=dtype)
        if t < start:
            continue  # replay the data stream up to `start`
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
        sched.step()
    return net


@functools.lru_cache(maxsize=None)
def torch_run(name, dtype, device):
    """torch.optim's trajectory for a case, and the parameters it started from."""
    _, torch_cls, kwargs = CASES[name]
    start = [p.detach().clone()
             for p in make_run(torch_cls, kwargs, dtype, device)[0].parameters()]
    net = train(*make_run(torch_cls, kwargs, dtype, device), dtype, device)
    return [p.detach().clone() for p in net.parameters()], start


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("foreach", [False, True], ids=["readable", "foreach"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_same_trajectory_as_torch(name, foreach, dtype, device):
    ours_cls, _, kwargs = CASES[name]
    a = make_run(ours_cls, dict(kwargs, foreach=foreach), dtype, device)
    net_a = train(*a, dtype, device)
    ends_b, starts = torch_run(name, dtype, str(device))
    moved = False
    for pa, pb, p0 in zip(net_a.parameters(), ends_b, starts):
        if dtype == torch.float64:
            torch.testing.assert_close(pa, pb, rtol=1e-12, atol=1e-12 * pb.abs().max().item())
        else:
            torch.testing.assert_close(pa, pb)
        moved |= not torch.equal(pa, p0)
    assert moved, "the run left every parameter where it started, so it compared nothing"


@pytest.mark.parametrize("case", ["sgd_momentum", "adam", "adamw"])
def test_step_with_closure_matches_torch(case):
    # step() runs under no_grad; the closure must still build a graph, as torch's does.
    ours_cls, torch_cls, extra = CASES[case]
    x, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.ones(8)
    results = []
    for cls in (ours_cls, torch_cls):
        w = torch.nn.Parameter(torch.zeros(3))
        opt = cls([w], lr=0.1, **extra)

        def closure():
            opt.zero_grad()
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            return loss

        losses = [opt.step(closure).item() for _ in range(5)]
        results.append((losses, w.detach().clone()))
    # Same operations in the same order on five steps: equal to float32 rounding.
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1])
