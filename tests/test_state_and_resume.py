"""What an optimizer keeps, where it keeps it, and that a checkpoint resumes exactly."""

import copy
import io

import pytest
import torch

import adambook

from test_torch_equivalence import make_run, train

OPTIMIZERS = {
    "sgd": (adambook.SGD, {}),
    "sgd_momentum": (adambook.SGD, {"momentum": 0.9}),
    "adam": (adambook.Adam, {}),
    "adamw": (adambook.AdamW, {}),
    "adam_amsgrad": (adambook.Adam, {"amsgrad": True}),
    "adam_no_bias_correction": (adambook.Adam, {"bias_correction": False}),
}

# What the post says each optimizer stores per parameter, and nothing else.
EXPECTED_STATE = {
    "sgd": set(),
    "sgd_momentum": {"momentum_buffer"},
    "adam": {"step", "exp_avg", "exp_avg_sq"},
    "adamw": {"step", "exp_avg", "exp_avg_sq"},
    "adam_amsgrad": {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    "adam_no_bias_correction": {"step", "exp_avg", "exp_avg_sq"},
}


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_state_holds_exactly_what_the_post_says(name, dtype, device):
    cls, kwargs = OPTIMIZERS[name]
    net, opt, sched = make_run(cls, kwargs, dtype, device)
    train(net, opt, sched, dtype, device, steps=3)
    for p in net.parameters():
        state = opt.state.get(p, {})
        assert set(state) == EXPECTED_STATE[name]
        for key, value in state.items():
            if key == "step":
                assert value == 3
                continue
            assert value.shape == p.shape and value.dtype == p.dtype
            assert value.device == p.device, f"{key} is not on the parameter's device"


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("foreach", [False, True], ids=["readable", "foreach"])
def test_resume_from_state_dict_is_bit_exact(name, foreach, device):
    cls, kwargs = OPTIMIZERS[name]
    kwargs = dict(kwargs, foreach=foreach)
    dtype = torch.float32
    total, half = 200, 120

    straight = train(*make_run(cls, kwargs, dtype, device), dtype, device, steps=total)

    net, opt, sched = make_run(cls, kwargs, dtype, device)
    train(net, opt, sched, dtype, device, steps=half)
    buffer = io.BytesIO()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buffer)
    del net, opt, sched
    buffer.seek(0)
    ckpt = torch.load(buffer, map_location=device)

    net2, opt2, sched2 = make_run(cls, kwargs, dtype, device, seed=99)  # different init
    net2.load_state_dict(ckpt["net"])
    opt2.load_state_dict(ckpt["opt"])
    sched2.load_state_dict(ckpt["sched"])
    resumed = train(net2, opt2, sched2, dtype, device, steps=total - half, start=half)

    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b), "the resumed run differs from the uninterrupted one"


def test_state_follows_parameter_after_load_to_another_dtype():
    """load_state_dict casts floating state to the parameter's dtype, as torch does."""
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = adambook.Adam([p])
    p.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    q = torch.nn.Parameter(torch.ones(3, dtype=torch.float32))
    opt2 = adambook.Adam([q])
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[q]["exp_avg"].dtype == torch.float32
    q.grad = torch.ones(3)
    opt2.step()
    assert opt2.state[q]["step"] == 2


def test_loads_a_torch_adam_checkpoint():
    """torch.optim.Adam stores ``step`` as a 0-d tensor; adambook reads it as an int."""
    torch.manual_seed(0)
    p_ours = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    p_ref = torch.nn.Parameter(p_ours.detach().clone())
    ref = torch.optim.Adam([p_ref], lr=0.1)
    grads = [torch.randn(4, dtype=torch.float64) for _ in range(6)]
    for g in grads[:3]:
        p_ref.grad = g.clone()
        ref.step()
    p_ours.data.copy_(p_ref.detach())
    ours = adambook.Adam([p_ours], lr=0.1)
    # state_dict() holds references to the live tensors; a checkpoint is a copy.
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))
    for g in grads[3:]:
        p_ref.grad, p_ours.grad = g.clone(), g.clone()
        ref.step()
        ours.step()
    torch.testing.assert_close(p_ours, p_ref, rtol=1e-12, atol=0)
    assert ours.state[p_ours]["step"] == 6


def test_checkpoint_with_an_option_adambook_lacks_is_refused():
    """A torch checkpoint with maximize=True must not be followed with maximize off."""
    p = torch.nn.Parameter(torch.ones(2))
    ref = torch.optim.Adam([p], maximize=True)
    ours = adambook.Adam([torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(ValueError, match="does not implement maximize=True"):
        ours.load_state_dict(ref.state_dict())
