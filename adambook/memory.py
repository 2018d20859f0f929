"""What an optimizer keeps, counted on live objects and at scale (sections
sec-memory-count, sec-memory-scale); peaks and times: :mod:`.measure`."""

import math
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import torch


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of the elements of ``t``: ``numel * element_size``."""
    return t.numel() * t.element_size()


@dataclass(frozen=True)
class MemoryCount:
    """Bytes of an optimizer's distinct ``params``, ``grads``, ``state`` (1-d
    and up), 0-d ``scalars`` (torch's ``step``); ``numel``, ``n_tensors``."""

    params: int
    grads: int
    state: int
    scalars: int
    numel: int
    n_tensors: int

    def ratio(self, numerator: str, denominator: str = "params") -> Fraction:
        """An exact ratio of sums of fields, e.g. ``ratio("params+state")``."""
        return Fraction(*(sum(getattr(self, n.strip()) for n in e.split("+"))
                          for e in (numerator, denominator)))


def count_memory(optimizer: torch.optim.Optimizer) -> MemoryCount:
    """Count the bytes of ``optimizer``'s parameters, gradients and state.

    >>> p = torch.nn.Parameter(torch.zeros(1000))
    >>> p.grad, opt = torch.ones(1000), torch.optim.Adam([p])
    >>> opt.step()
    >>> c = count_memory(opt)
    >>> c.params, c.grads, c.state, c.scalars
    (4000, 4000, 8000, 4)
    """
    params = {id(p): p for g in optimizer.param_groups
              for p in g["params"]}.values()  # each tensor once
    state = {id(v): v for s in optimizer.state.values() for v in s.values()
             if isinstance(v, torch.Tensor)}.values()
    return MemoryCount(
        params=sum(map(tensor_bytes, params)),
        grads=sum(tensor_bytes(p.grad) for p in params if p.grad is not None),
        state=sum(tensor_bytes(t) for t in state if t.dim() > 0),
        scalars=sum(tensor_bytes(t) for t in state if t.dim() == 0),
        numel=sum(p.numel() for p in params),
        n_tensors=len(params))


#: The optimizers the chapter compares, in the order of their state size.
OPTIMIZER_NAMES = ("sgd", "sgd_momentum", "adam", "adamw")


def make_optimizer(name: str, params, library: str = "torch",
                   lr: float = 1e-3, in_backward: bool = False, **kwargs):
    """Optimizer ``name`` of :data:`OPTIMIZER_NAMES` from ``library``,
    ``"torch"`` or ``"adambook"``, applied in the backward pass if
    ``in_backward`` (:func:`step_in_backward`); ``kwargs`` pass through
    (e.g. ``foreach=True`` or ``fused=True`` for torch)."""
    from . import optim as ab

    lib = {"torch": torch.optim, "adambook": ab}.get(library)
    if lib is None or name not in OPTIMIZER_NAMES:
        raise ValueError(
            f"unknown optimizer {name!r} for library {library!r}")
    if name.startswith("sgd"):
        kwargs["momentum"] = 0.9 if name == "sgd_momentum" else 0.0
    make = {"adam": lib.Adam, "adamw": lib.AdamW}.get(name, lib.SGD)
    opt = make(params, lr=lr, **kwargs)
    return step_in_backward(opt) if in_backward else opt


def step_in_backward(optimizer):
    """Step ``optimizer`` inside ``backward()``: a post-accumulate-grad hook
    updates each tensor once its gradient is complete, then frees that
    gradient (LOMO, Lv et al. 2023)."""

    def hook(p):
        optimizer.step()
        p.grad = None

    for p in (p for g in optimizer.param_groups for p in g["params"]):
        p.register_post_accumulate_grad_hook(hook)
    return optimizer


def mlp(width: int, depth: int, seed: int = 0, dtype=torch.float32,
        device="cpu"):
    """``depth`` layers ``Linear(width, width)``, each followed by a ReLU:
    ``depth * (width**2 + width)`` parameters in many equal tensors."""
    torch.manual_seed(seed)
    layers = [m for _ in range(depth)
              for m in (torch.nn.Linear(width, width), torch.nn.ReLU())]
    return torch.nn.Sequential(*layers).to(device=device, dtype=dtype)


def transformer(d_model: int, nhead: int, num_layers: int,
                dim_feedforward: int, seed: int = 0, dtype=torch.float32,
                device="cpu"):
    """A batch-first ``torch.nn.TransformerEncoder``, as torch builds it."""
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward, batch_first=True)
    return torch.nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=
                                       False).to(device=device, dtype=dtype)


def model_input(model: torch.nn.Module, batch: int, seq_len: int = 64,
                seed: int = 1):
    """A random batch for :func:`mlp` or :func:`transformer`, drawn on the CPU
    (the numbers do not depend on the device) and moved to the model's."""
    shape = ((batch, seq_len, model.layers[0].self_attn.embed_dim)
             if isinstance(model, torch.nn.TransformerEncoder)
             else (batch, model[0].in_features))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    p = next(model.parameters())
    return x.to(device=p.device, dtype=p.dtype)


def train_step(model, optimizer, x) -> float:
    """One step on ``mean(model(x)**2)``; the gradients outlive it, to be
    counted, as they are alive at the peak of a step."""
    optimizer.zero_grad(set_to_none=True)
    (loss := model(x).float().square().mean()).backward()
    optimizer.step()
    return loss.item()


@contextmanager
def saved_activation_bytes(model: torch.nn.Module):
    """Around a forward pass: ``{storage: bytes}`` of what autograd saves for
    backward, the parameters excluded.

    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    >>> with saved_activation_bytes(net) as saved:
    ...     net(torch.randn(5, 8)).sum().backward()
    >>> sum(saved.values())  # the Linear's input, the ReLU's output: 5 x 8
    320
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and storage.data_ptr() != 0:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield saved


#: Moment buffers per parameter: SGD none, momentum one, Adam and AdamW two.
STATE_SLOTS = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}

#: The model sizes of the chapter's table, in parameters.
MODEL_SIZES = {"125M": 125e6, "1.3B": 1.3e9, "7B": 7e9, "70B": 70e9}


def bytes_per_param(optimizer: str, precision: str = "fp32") -> dict:
    r"""Bytes per parameter of a training step, by component.

    ``"fp32"``: 4 bytes each. ``"mixed"`` (ZeRO's accounting): 2-byte
    weights and gradients, fp32 master copy and state. ``"adam8bit"``: two
    one-byte slots plus an fp32 scale per 2048 (Dettmers et al. 2022).

    >>> bytes_per_param("adam")["total"], bytes_per_param("sgd")["total"]
    (16, 8)
    """
    if precision not in ("fp32", "mixed"):
        raise ValueError(f"precision must be fp32 or mixed, not {precision!r}")
    weights, grads, master = (4, 4, 0) if precision == "fp32" else (2, 2, 4)
    if optimizer == "adam8bit":
        state = eightbit_state_bytes(2048) / 2048
    elif optimizer in STATE_SLOTS:
        state = STATE_SLOTS[optimizer] * 4
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    return {"weights": weights, "grads": grads, "master": master,
            "state": state, "total": weights + grads + master + state}


#: The columns of :func:`training_memory_table`: (optimizer, precision).
TABLE_COLUMNS = {
    "fp32 SGD": ("sgd", "fp32"), "fp32 SGD+momentum": ("sgd_momentum", "fp32"),
    "fp32 Adam": ("adam", "fp32"), "mixed Adam": ("adam", "mixed"),
    "mixed 8-bit Adam": ("adam8bit", "mixed")}


def training_memory_table(sizes: dict[str, float]) -> list[dict]:
    """GB (1e9 bytes) of weights + gradients + state, no activations: a
    dict per model, ``"model"``, ``"params"``, :data:`TABLE_COLUMNS`.

    >>> row = training_memory_table({"7B": 7e9})[0]
    >>> row["fp32 SGD"], row["fp32 Adam"], row["mixed Adam"]
    (56.0, 112.0, 112.0)
    """
    return [{"model": name, "params": n} | {
        col: round(n * bytes_per_param(*how)["total"] / 1e9, 6)
        for col, how in TABLE_COLUMNS.items()} for name, n in sizes.items()]


def zero_bytes_per_param(stage: int, n_devices: int, k: float = 12.0):
    r"""Bytes per parameter on each device under ZeRO stage 0-3: stages 1,
    2, 3 shard the :math:`K` bytes of state, then the 2 of gradients, then
    the 2 of weights over :math:`N_d` devices: :math:`4 + K`,
    :math:`4 + K/N_d`, :math:`2 + (2 + K)/N_d`, :math:`(4 + K)/N_d`.

    >>> zero_bytes_per_param(1, 8), zero_bytes_per_param(3, 8)
    (5.5, 2.0)
    """
    n = n_devices
    return {0: 4 + k, 1: 4 + k / n, 2: 2 + (2 + k) / n, 3: (4 + k) / n}[stage]


def eightbit_state_bytes(numel: int, block: int = 2048, slots: int = 2):
    """Bytes of ``slots`` blockwise 8-bit state tensors of ``numel`` elements:
    one byte an element, one fp32 scale a block.

    >>> eightbit_state_bytes(4096)  # 2 x (4096 codes + 2 scales of 4 bytes)
    8208
    """
    return slots * (numel + 4 * math.ceil(numel / block))


def adafactor_state_numel(shape) -> int:
    """Elements of Adafactor's second moment for a parameter of ``shape``:
    a row and a column over the last two dimensions, or the full vector.

    >>> adafactor_state_numel((1024, 4096)), adafactor_state_numel((4096,))
    (5120, 4096)
    """
    return (math.prod(shape) if len(shape) < 2
            else math.prod(shape[:-2]) * (shape[-2] + shape[-1]))
