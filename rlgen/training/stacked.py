"""N networks of one architecture trained as one batch: stacked parameters and a batched forward.

Row i of every stacked tensor is network i's (``torch.func.stack_module_state``).
Networks built from parts this module knows (Linear, LayerNorm, elementwise activations,
Sequential, and modules with a ``batched_forward``, such as rlgen's MLP and Q-network)
run as batched matmuls (``baddbmm``), with the same values as ``vmap`` over
``functional_call``, which on this 2-core CPU cost 1.5x as much for a 128-wide linear layer
of 4 networks at batch 256 (1.3x for 16) and 1.3x for their LayerNorms (``python
scripts/bench_stacked_linear.py --networks 4 --batch 256``), before its own Python overhead;
other networks (CNNs) are vmapped. One optimizer over the stacked tensors steps all N at once: Adam, RMSprop and
SGD are elementwise, so each row follows exactly the arithmetic it would alone,
and ``clip_grad_norm_rows`` clips each network by its own norm. The per-network
modules stay the source and the destination: ``write_back`` copies a row into its
module (and a row of the optimizer state into that network's own optimizer), so
a network trained in a batch checkpoints exactly like one trained alone, and
``stack_optimizer_states`` rebuilds the batch from per-network optimizers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class StackedModules:
    """``modules`` (same architecture, each its own weights) as stacked tensors.

    Args:
        modules: the N networks; their current weights are copied in.
        requires_grad: make the stacked parameters trainable leaves.
    """

    def __init__(self, modules: list[nn.Module], requires_grad: bool = True):
        self.count = len(modules)
        params, buffers = stack_module_state(modules)
        self.params = {k: v.detach().clone().requires_grad_(requires_grad) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.base = copy.deepcopy(modules[0]).to("meta")  # the architecture only; its weights are never used
        self._batched = batched_plan(self.base, "")
        self._tensors = self.params | self.buffers  # the same tensors, by full name: what the plan reads
        self._forward = vmap(self._call)

    def _call(self, params: dict, buffers: dict, *args: torch.Tensor) -> Any:
        return functional_call(self.base, (params, buffers), args)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def __call__(self, *args: torch.Tensor) -> Any:
        """Every network on its own input: args have a leading dimension N."""
        if self._batched is not None and len(args) == 1:
            return self._batched(self._tensors, args[0])
        return self._forward(self.params, self.buffers, *args)

    def functional(self, params: dict, buffers: dict):
        """Inside a function vmapped over networks: network i as a callable, given its rows."""
        return lambda *args: functional_call(self.base, (params, buffers), args)

    def row(self, i: int) -> _Row:
        """Network i's weights, with ``state_dict()`` (what ``BestSnapshot`` reads)."""
        return _Row(self, i)

    @torch.no_grad()
    def write_back(self, i: int, module: nn.Module) -> None:
        """Copy network i's rows into ``module``."""
        named = dict(module.named_parameters()) | dict(module.named_buffers())
        for name, value in (self.params | self.buffers).items():
            named[name].copy_(value[i])


# A batched plan: (stacked tensors by full name, x (N, B, ...)) -> output (N, B, ...).
BatchedPlan = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]

_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Identity)


def batched_plan(module: nn.Module, prefix: str) -> BatchedPlan | None:
    """``module``'s forward for N stacked copies as batched ops, or None if it has a part this
    does not know. A module may define ``batched_forward(part, tensor, x)``: ``part(name, y)`` runs
    its child ``name`` batched on ``y`` and ``tensor(name)`` is its own stacked tensor ``name``."""
    if isinstance(module, nn.Linear):
        weight, bias = prefix + "weight", prefix + "bias"
        if module.bias is None:
            return lambda t, x: torch.bmm(x, t[weight].transpose(1, 2))
        return lambda t, x: torch.baddbmm(t[bias].unsqueeze(1), x, t[weight].transpose(1, 2))
    if isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1 or (module.elementwise_affine and module.bias is None):
            return None
        shape, eps, weight, bias = module.normalized_shape, module.eps, prefix + "weight", prefix + "bias"
        if not module.elementwise_affine:
            return lambda t, x: F.layer_norm(x, shape, eps=eps)
        # normalise, then scale and shift: what vmap's rule for a batched affine LayerNorm computes
        return lambda t, x: F.layer_norm(x, shape, eps=eps) * t[weight].unsqueeze(1) + t[bias].unsqueeze(1)
    if isinstance(module, _ELEMENTWISE):
        return lambda t, x: module(x)  # stateless: the meta-device module applies to any tensor
    children = {name: batched_plan(child, f"{prefix}{name}.") for name, child in module.named_children()}
    if any(plan is None for plan in children.values()):
        return None
    if isinstance(module, nn.Sequential):
        steps = list(children.values())

        def chain(t, x):
            for step in steps:
                x = step(t, x)
            return x

        return chain
    if hasattr(module, "batched_forward"):
        return lambda t, x: module.batched_forward(lambda name, y: children[name](t, y),
                                                   lambda name: t[prefix + name], x)
    return None


class _Row:
    def __init__(self, stacked: StackedModules, i: int):
        self.stacked, self.i = stacked, i

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v[self.i].detach() for k, v in (self.stacked.params | self.stacked.buffers).items()}


def _is_row_tensor(value: Any, count: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == count


def optimizer_state_row(optimizer: torch.optim.Optimizer, i: int, count: int) -> dict:
    """Network i's part of the state of an optimizer over stacked tensors, as its own optimizer's
    ``state_dict`` (per-tensor moments sliced; step counts and hyperparameters shared)."""
    state = optimizer.state_dict()
    rows = {k: {name: value[i].clone() if _is_row_tensor(value, count) else copy.deepcopy(value)
                for name, value in per_param.items()}
            for k, per_param in state["state"].items()}
    return {"state": rows, "param_groups": copy.deepcopy(state["param_groups"])}


def stack_optimizer_states(optimizers: list[torch.optim.Optimizer]) -> dict:
    """The ``state_dict`` of one optimizer over the stacked parameters of networks whose own
    optimizers are ``optimizers`` (all at the same step: a batch resumes together)."""
    states = [opt.state_dict() for opt in optimizers]
    first = states[0]
    stacked = {}
    for k, per_param in first["state"].items():
        stacked[k] = {}
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                stacked[k][name] = torch.stack([s["state"][k][name] for s in states])
            else:
                stacked[k][name] = copy.deepcopy(value)
    return {"state": stacked, "param_groups": copy.deepcopy(first["param_groups"])}
