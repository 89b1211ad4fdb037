"""Optimizers, learning-rate schedules, one gradient step, and optional compilation.

These are the mechanics every algorithm's own training loop calls; the loop
itself stays written out in the algorithm's ``train`` module.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from rlgen.errors import InputError

OptimizerName = Literal["adam", "adamw", "rmsprop", "sgd"]
ScheduleName = Literal["constant", "linear", "step", "exponential", "cosine"]
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "linear", "step", "exponential", "cosine")


def make_optimizer(
    name: OptimizerName,
    params: Iterable[torch.Tensor] | Iterable[dict],
    learning_rate: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Build an optimizer by name.

    Args:
        name: ``adam``, ``adamw`` (decoupled weight decay), ``rmsprop`` or ``sgd``
            (SGD with ``momentum``).
        params: parameters or parameter groups, as for any torch optimizer.
        learning_rate: the base learning rate (schedules scale it).
        weight_decay: L2 penalty (adam, rmsprop, sgd) or decoupled decay (adamw).
        betas: Adam/AdamW moment decays.
        eps: added to the denominator (adam, adamw, rmsprop).
        momentum: SGD momentum; not used by the other optimizers.

    Raises:
        ValueError: unknown name or a non-positive learning rate.
    """
    if not learning_rate > 0:
        raise InputError(f"learning_rate must be > 0, got {learning_rate!r}")
    params = list(params)
    # Fused Adam updates every tensor in one kernel: on CPU it is ~25% faster per step than
    # torch's default single-tensor loop for the small networks of DQN (scripts/bench_dqn.py).
    fused = {"fused": True} if _fusable(params) else {}
    # RMSprop and SGD have no fused CPU kernel; foreach still batches their updates.
    multi = {"foreach": True} if _fusable(params) else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, betas=betas, eps=eps, weight_decay=weight_decay, **fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, betas=betas, eps=eps, weight_decay=weight_decay, **fused)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=learning_rate, eps=eps, weight_decay=weight_decay, **multi)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay, **multi)
    raise InputError(f"unknown optimizer {name!r}; use one of: {', '.join(OPTIMIZERS)}")


def _fusable(params: list) -> bool:
    """Fused Adam needs floating-point tensors on CPU or CUDA (not MPS); parameter groups are looked into."""
    tensors = [t for item in params for t in (item["params"] if isinstance(item, dict) else [item])]
    if not tensors or not all(isinstance(p, torch.Tensor) for p in tensors):
        return False
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)


def make_lr_schedule(
    optimizer: torch.optim.Optimizer,
    name: ScheduleName,
    total_steps: int,
    warmup_steps: int = 0,
    final_factor: float = 0.0,
    step_size: int = 1000,
    gamma: float = 0.5,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A ``LambdaLR`` scaling the base lr; call ``.step()`` after each optimizer step.

    Warmup rises linearly, reaching 1 at step ``warmup_steps - 1`` (0-based), so
    no step is wasted at lr 0. After it, with ``t = step - warmup_steps`` and
    progress ``p = t / (total_steps - warmup_steps)`` clipped to 1, the factor is

    - constant: 1
    - linear: ``1 + (final_factor - 1) * p``
    - cosine: ``final_factor + (1 - final_factor) * (1 + cos(pi * p)) / 2``
    - step: ``gamma ** (t // step_size)``
    - exponential: ``gamma ** (t / step_size)`` (the smooth version of step: it
      also multiplies by ``gamma`` every ``step_size`` steps)

    Its ``state_dict()`` holds only JSON values, so it can go into a checkpoint's
    ``meta``. When resuming, build the schedule *before* loading the optimizer
    state, then load the schedule state (building it afterwards resets the lr).

    Raises:
        ValueError: unknown name or an out-of-range argument, naming it.
    """
    if name not in SCHEDULES:
        raise InputError(f"unknown lr schedule {name!r}; use one of: {', '.join(SCHEDULES)}")
    if total_steps < 1:
        raise InputError(f"total_steps must be >= 1, got {total_steps!r}")
    if not 0 <= warmup_steps <= total_steps:
        raise InputError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps!r}")
    if final_factor < 0:
        raise InputError(f"final_factor must be >= 0, got {final_factor!r}")
    if step_size < 1:
        raise InputError(f"step_size must be >= 1, got {step_size!r}")
    if not 0 < gamma <= 1:
        raise InputError(f"gamma must be in (0, 1], got {gamma!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = step - warmup_steps
        progress = min(1.0, t / max(1, total_steps - warmup_steps))
        if name == "linear":
            return 1.0 + (final_factor - 1.0) * progress
        if name == "cosine":
            return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "step":
            return gamma ** (t // step_size)
        if name == "exponential":
            return gamma ** (t / step_size)
        return 1.0  # constant

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (L2, foreach) with the same arithmetic, minus its
    per-call grouping of tensors by device and dtype: that Python work cost a small DQN
    update ~20% of its time. Falls back to torch's for mixed devices or dtypes."""
    parameters = list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    first = grads[0]
    if any(g.device != first.device or g.dtype != first.dtype or g.is_sparse for g in grads):
        return nn.utils.clip_grad_norm_(list(parameters), max_norm)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    clip_coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(grads, clip_coef)
    return total


def gradient_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    parameters: Iterable[torch.Tensor],
    max_grad_norm: float | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor | float:
    """Backpropagate ``loss`` and take one optimizer step, with optional clipping.

    Args:
        loss: a scalar loss with a graph.
        optimizer: the optimizer owning ``parameters``.
        parameters: the parameters to clip (usually ``model.parameters()``).
        max_grad_norm: clip the global L2 norm of the gradients to this; None = no clipping.
        scaler: a ``GradScaler`` (fp16) or None; with one, gradients are unscaled
            before clipping so the threshold means the same as in fp32.

    Returns:
        The gradient norm before clipping as a 0-d tensor when clipping, else 0.0.
        It stays on the device: call ``float()`` only when logging, since that
        forces a GPU sync.
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    grad_norm = 0.0
    if max_grad_norm is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = clip_grad_norm(parameters, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)  # skips the step if the gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    return grad_norm


def _compile_problem(model: nn.Module) -> str | None:
    """Why ``torch.compile`` cannot work for ``model`` here, or None if it can."""
    try:
        torch._dynamo.eval_frame.check_if_dynamo_supported()
    except Exception as exc:  # the message says which platform or Python is unsupported
        return str(exc)
    param = next(model.parameters(), None)
    device_type = param.device.type if param is not None else "cpu"
    if device_type == "cpu" and not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")):
        return "compiling for CPU needs a C++ compiler (c++, g++ or clang++) on PATH"
    return None


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when ``enabled``, else ``model`` unchanged.

    Compilation is lazy (it happens on the first forward), so the checks here
    catch the common reasons it would fail later with a long traceback.
    The compiled module shares parameters with ``model``; checkpoint ``model``.

    Raises:
        ValueError: compilation is not supported on this machine.
    """
    if not enabled:
        return model
    problem = _compile_problem(model)
    if problem is not None:
        raise InputError(f"compile=true is not supported here: {problem}; set compile=false")
    return torch.compile(model)


def clip_grad_norm_rows(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm`` for stacked parameters (row i of every tensor belongs to network i):
    each network's gradient is clipped to ``max_norm`` by its own global L2 norm, with the same
    arithmetic as for one network. Returns the norms before clipping, shape (N,)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    rows = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(rows, -1), 2.0, dim=1) for g in grads])  # (P, N)
    total = torch.linalg.vector_norm(norms, 2.0, dim=0)  # (N,)
    clip_coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(clip_coef.view(rows, *([1] * (g.dim() - 1))))
    return total
