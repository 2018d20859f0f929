"""Bad input gets torch.optim's error, with torch's wording, and never a wrong step."""

import math

import pytest
import torch

import adambook

ALL = [adambook.SGD, adambook.Adam, adambook.AdamW]
ADAMS = [adambook.Adam, adambook.AdamW]


def param():
    return torch.nn.Parameter(torch.zeros(3))


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("lr", [-1.0, math.nan, math.inf])
def test_invalid_learning_rate(cls, lr):
    with pytest.raises(ValueError, match=rf"^Invalid learning rate: {lr}$"):
        cls([param()], lr=lr)


def test_message_matches_torch_exactly():
    with pytest.raises(ValueError) as ours:
        adambook.Adam([param()], lr=-1.0)
    with pytest.raises(ValueError) as theirs:
        torch.optim.Adam([param()], lr=-1.0)
    assert str(ours.value) == str(theirs.value) == "Invalid learning rate: -1.0"


@pytest.mark.parametrize("cls", ADAMS)
@pytest.mark.parametrize(
    "betas,index", [((1.0, 0.999), 0), ((-0.1, 0.999), 0), ((0.9, 1.0), 1), ((0.9, math.nan), 1)]
)
def test_invalid_betas(cls, betas, index):
    with pytest.raises(ValueError, match=rf"^Invalid beta parameter at index {index}: {betas[index]}$"):
        cls([param()], betas=betas)


@pytest.mark.parametrize("cls", ADAMS)
@pytest.mark.parametrize("eps", [-1e-8, math.nan])
def test_invalid_eps(cls, eps):
    with pytest.raises(ValueError, match=rf"^Invalid epsilon value: {eps}$"):
        cls([param()], eps=eps)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("wd", [-0.1, math.nan])
def test_invalid_weight_decay(cls, wd):
    with pytest.raises(ValueError, match=rf"^Invalid weight_decay value: {wd}$"):
        cls([param()], weight_decay=wd)


@pytest.mark.parametrize("momentum", [-0.5, math.nan])
def test_invalid_momentum(momentum):
    with pytest.raises(ValueError, match=rf"^Invalid momentum value: {momentum}$"):
        adambook.SGD([param()], lr=0.1, momentum=momentum)


@pytest.mark.parametrize("cls", ALL)
def test_non_numeric_hyperparameter_is_a_type_error(cls):
    with pytest.raises(TypeError, match="Invalid learning rate"):
        cls([param()], lr="0.1")


@pytest.mark.parametrize("cls", ALL)
def test_bad_value_in_a_later_group_is_refused_and_not_kept(cls):
    opt = cls([param()], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate: -2.0"):
        opt.add_param_group({"params": [param()], "lr": -2.0})
    assert len(opt.param_groups) == 1
    with pytest.raises(ValueError, match="Invalid learning rate: -3.0"):
        cls([{"params": [param()]}, {"params": [param()], "lr": -3.0}], lr=0.1)


@pytest.mark.parametrize("cls", ALL)
def test_empty_parameter_list(cls):
    with pytest.raises(ValueError, match="empty parameter list"):
        cls([])


@pytest.mark.parametrize("cls", ALL)
def test_bare_tensor_is_a_type_error(cls):
    with pytest.raises(TypeError, match="iterable"):
        cls(param())


@pytest.mark.parametrize("cls", ALL)
def test_sparse_gradient_is_refused(cls):
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = cls(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    before = emb.weight.detach().clone()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    assert torch.equal(emb.weight, before)


@pytest.mark.parametrize("cls", ALL)
def test_complex_parameter_is_refused(cls):
    z = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="does not support complex parameters"):
        cls([z], lr=0.1)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("foreach", [False, True])
def test_none_grad_is_left_untouched(cls, foreach):
    a, b = param(), torch.nn.Parameter(torch.ones(3))
    opt = cls([a, b], lr=0.1, weight_decay=0.5, foreach=foreach)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b, torch.ones(3)), "a parameter without grad was changed (weight decay?)"
    assert b not in opt.state or len(opt.state[b]) == 0
    assert not torch.equal(a, torch.zeros(3))
