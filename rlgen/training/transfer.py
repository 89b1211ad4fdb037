"""Start part of a model from another run's checkpoint: feature extraction or fine-tuning.

nanoGPT's ``init_from`` as one config block every algorithm has (``transfer``)::

    transfer: {init_from: "runs/frames__vae__0__1700000000:vae.encoder", init_into: q_net.backbone,
               freeze: true}

``init_from`` names a run directory (or its checkpoint) and a tensor prefix inside it,
``MODULE[.SUBMODULE...]`` as the checkpoint names its modules (``q_net``, ``vae``, ``critic``,
``generator``, ``denoiser``); ``init_into`` the prefix of this run's model that receives
them. The load is strict inside the two prefixes (the same tensor names, the same shapes:
otherwise one line naming both) and touches nothing outside them. The two models must
read the same inputs: the source run's input convention and input shape are checked
against this run's before anything is copied (a VAE encoder reads images in [0, 1], a
WGAN-GP critic or a denoiser in [-1, 1], a Q-network what its environment gives).

Then either ``freeze`` (the loaded tensors keep their values: feature extraction) or
fine-tune them at ``lr_factor`` times the run's learning rate. Freezing and the learning
rate groups depend on ``init_into`` alone, so a resumed run rebuilds them without the
source run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlgen.errors import CheckpointError, InputError

CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class TransferConfig:
    """Where part of the model's weights come from, and how they train afterwards."""

    init_from: str = field(default="", metadata={
        "help": "RUN_DIR:MODULE[.PREFIX] of another run to start from (e.g. runs/x:vae.encoder); empty = scratch"})
    init_into: str = field(default="", metadata={
        "help": "MODULE[.PREFIX] of this run that receives them (empty = the same name as in init_from)"})
    freeze: bool = field(default=False, metadata={"help": "Keep the loaded weights fixed (feature extraction)."})
    lr_factor: float = field(default=1.0, metadata={
        "help": "Learning-rate factor of the loaded weights when fine-tuning (0 < f; 1 = the run's rate)."})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.init_from:
            run, sep, name = self.init_from.rpartition(":")
            if not sep or not run or not name:
                raise InputError(f"transfer.init_from={self.init_from!r} must be RUN_DIR:MODULE[.PREFIX], "
                                 "e.g. runs/fashion-mnist__vae__0__1700000000:vae.encoder")
        elif self.init_into or self.freeze or self.lr_factor != 1.0:
            raise InputError("transfer.init_into / freeze / lr_factor need transfer.init_from (the run to start from)")
        if not (math.isfinite(self.lr_factor) and self.lr_factor > 0):
            raise InputError(f"transfer.lr_factor={self.lr_factor!r} must be a finite number > 0")

    @property
    def source(self) -> tuple[Path, str]:
        run, _, name = self.init_from.rpartition(":")
        return Path(run), name

    @property
    def target(self) -> str:
        return self.init_into or self.source[1]


@dataclass(frozen=True)
class Inputs:
    """What a model's first layer reads: the value range and one input's shape."""

    convention: str  # "[0, 1]", "[-1, 1]", "[0, 255]" or "unscaled floats"
    shape: tuple[int, ...]


def run_inputs(algo: str, meta: dict[str, Any]) -> Inputs:
    """The inputs of a run's model, from its checkpoint meta (``algo``: the checkpoint's)."""
    if algo in ("vae", "gan", "diffusion"):
        return Inputs("[0, 1]" if algo == "vae" else "[-1, 1]", tuple(meta["data"]["image_shape"]))
    return observation_inputs(meta["obs_dtype"], tuple(meta["obs_shape"]), meta["config"]["backbone"]["kind"])


def observation_inputs(dtype: str, shape: tuple[int, ...], backbone_kind: str) -> Inputs:
    """A Q-network's inputs: booleans are 0/1; the CNNs scale uint8 pixels by 1/255, the others do not."""
    from rlgen.backbones.config import CNN_KINDS

    if dtype == "bool":
        return Inputs("[0, 1]", shape)
    if dtype == "uint8":
        return Inputs("[0, 1]" if backbone_kind in CNN_KINDS else "[0, 255]", shape)
    return Inputs("unscaled floats", shape)


def _split(name: str, modules: Iterable[str], where: str, owner: str) -> tuple[str, str]:
    """``MODULE[.PREFIX]`` -> (module, key prefix of its state dict), the module checked to exist."""
    module, _, prefix = name.partition(".")
    if module not in modules:
        raise InputError(f"{where} names module {module!r}, which {owner} does not have; it has: {', '.join(modules)}")
    return module, prefix + "." if prefix else ""


def _under(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` lies under ``prefix`` (a submodule path; empty = everything)."""
    return not prefix or name == prefix or name.startswith(prefix + ".")


def load_transfer(transfer: TransferConfig, modules: dict[str, nn.Module], inputs: Inputs) -> list[str]:
    """Copy the ``init_from`` tensors into ``modules``; returns the names it wrote (``module.key``).

    Everything is checked before the first tensor is copied: the run and its checkpoint
    exist, the source prefix names tensors, the target prefix names exactly the same
    ones with the same shapes, and both models read the same inputs.
    """
    from rlgen.training.checkpoint import load_checkpoint

    run, source_name = transfer.source
    path = run / CHECKPOINT_NAME if run.is_dir() else run
    if not path.is_file():
        raise CheckpointError(f"transfer.init_from: {str(run)!r} is not a run directory with a {CHECKPOINT_NAME} "
                              "(or a checkpoint file); pass the run to start from")
    checkpoint = load_checkpoint(path)
    source_module, source_prefix = _split(source_name, checkpoint.header["modules"], f"transfer.init_from ({path})",
                                          "that run")
    target_module, target_prefix = _split(transfer.target, modules, "transfer.init_into", "this run")

    stored = f"model/{source_module}/{source_prefix}"
    source = {k[len(stored):]: v for k, v in checkpoint.tensors.items() if k.startswith(stored)}
    if not source:
        raise InputError(f"transfer.init_from: {path} has no tensors under {source_name!r}; "
                         f"its modules are {', '.join(checkpoint.header['modules'])}")
    state = modules[target_module].state_dict()
    target = {k[len(target_prefix):]: v for k, v in state.items() if k.startswith(target_prefix)}
    if not target:
        raise InputError(f"transfer.init_into={transfer.target!r} names no tensors of this run's {target_module}")
    found = checkpoint.meta.get("algo", "?")
    theirs = run_inputs(found, checkpoint.meta)
    if theirs.convention != inputs.convention:
        raise InputError(f"{path} ({found}) reads inputs in {theirs.convention}, this run's model in "
                         f"{inputs.convention}: the weights would see other numbers than they were trained on; "
                         "start from a run that reads the same inputs")
    if theirs.shape != inputs.shape:
        raise InputError(f"{path} ({found}) was trained on inputs of shape {theirs.shape}, this run's are "
                         f"{inputs.shape}; start from a run on inputs of the same shape")

    missing, extra = sorted(target.keys() - source.keys()), sorted(source.keys() - target.keys())
    if missing or extra:
        raise InputError(f"{source_name!r} of {path} and this run's {transfer.target!r} hold different tensors "
                         f"(only there: {', '.join(extra[:4]) or '-'}; only here: {', '.join(missing[:4]) or '-'}); "
                         "build the receiving part with the same layer sizes")
    for key, tensor in target.items():
        if tuple(source[key].shape) != tuple(tensor.shape):
            raise InputError(f"{source_name}.{key} has shape {tuple(source[key].shape)} in {path} but "
                             f"{transfer.target}.{key} has shape {tuple(tensor.shape)} here; "
                             "build the receiving part with the same layer sizes")
    with torch.no_grad():
        for key, tensor in target.items():
            tensor.copy_(source[key].to(tensor.dtype))
    return [f"{target_module}.{target_prefix}{key}" for key in sorted(target)]


def optimizer_params(transfer: TransferConfig, module_name: str, module: nn.Module,
                     learning_rate: float) -> list[torch.nn.Parameter] | list[dict[str, Any]]:
    """The parameters of ``module`` to optimize, as a list or as two learning-rate groups.

    Frozen loaded parameters stop requiring gradients and are left out; fine-tuned ones get
    ``lr_factor`` x the learning rate. Decided by ``init_into`` alone (so also on resume).
    """
    params = list(module.named_parameters())
    if not transfer.init_from:
        return [p for _, p in params]
    target_module, _, prefix = transfer.target.partition(".")
    if target_module != module_name:
        return [p for _, p in params]
    loaded = [p for n, p in params if _under(n, prefix)]
    rest = [p for n, p in params if not _under(n, prefix)]
    if transfer.freeze:
        if not rest:
            raise InputError(f"transfer.freeze=true on all of {module_name!r} leaves it nothing to train; freeze a "
                             f"part (transfer.init_into={module_name}.SUBMODULE) or fine-tune (freeze=false)")
        for p in loaded:
            p.requires_grad_(False)
        return rest
    if transfer.lr_factor == 1.0:
        return loaded + rest
    return [{"params": rest}, {"params": loaded, "lr": learning_rate * transfer.lr_factor}]


def trainable(params: Iterable[torch.nn.Parameter] | Iterable[dict]) -> list[torch.nn.Parameter]:
    """The tensors of a parameter list or of parameter groups (for clipping)."""
    out = []
    for item in params:
        out.extend(item["params"] if isinstance(item, dict) else [item])
    return out
