"""One-file checkpoints: safetensors tensors plus a JSON header, no pickle.

A checkpoint is one ``*.safetensors`` file. Tensors are stored under

- ``model/<name>/<state_dict key>`` for each module,
- ``optim/<name>/...`` for each optimizer's state tensors (Adam moments, steps),
- ``extra/<name>`` for caller tensors (e.g. a replay buffer's priorities),
- ``rng/torch_cpu`` and ``rng/cuda/<i>`` for torch's generator states,

and the safetensors metadata key ``"rlgen"`` holds one JSON document: the
caller's ``meta`` (config, step, algo, ...), the non-tensor part of each
optimizer state (param_groups, with tensors replaced by references to their
keys) and the python and numpy RNG states. Loading therefore runs no code from
the file, and resuming (weights + optimizer + RNG) continues a run bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from rlgen.errors import CheckpointError, InputError

FORMAT = "rlgen-checkpoint"
VERSION = 1
HEADER_KEY = "rlgen"
REQUIRED_META = ("config", "step", "algo")
# Tags marking non-JSON values inside the encoded optimizer state.
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit; larger means "not safetensors"
HISTORY = "checkpoints"  # a run directory's folder of earlier checkpoints (rlgen.training.run_checkpoints)


# ----------------------------------------------------------------------------- encoding


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Turn a state_dict-like value into JSON, moving tensors into ``tensors``.

    Tuples and dicts with non-string keys are tagged so that :func:`_decode`
    rebuilds exactly the same Python structure (``betas`` stays a tuple,
    parameter indices stay ints).
    """
    if isinstance(value, torch.Tensor):
        tensors[key] = value
        return {_TENSOR: key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not {_TENSOR, _TUPLE, _ITEMS} & value.keys():
            return {k: _encode(v, f"{key}/{k}", tensors) for k, v in value.items()}
        if all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
            return {_ITEMS: [[k, _encode(v, f"{key}/{k}", tensors)] for k, v in value.items()]}
    raise InputError(f"cannot store {key!r} in a checkpoint: {type(value).__name__} values are not supported")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_encode`."""
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        # A copy: optimizers update their state in place and must not alias the checkpoint.
        return tensors[value[_TENSOR]].clone()
    if _TUPLE in value:
        return tuple(_decode(v, tensors) for v in value[_TUPLE])
    if _ITEMS in value:
        return {k: _decode(v, tensors) for k, v in value[_ITEMS]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def _rng_state(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Capture every global RNG: tensors go into ``tensors``, the rest is returned as JSON."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng/torch_cpu"] = torch.get_rng_state()
    num_cuda = 0
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
            num_cuda += 1
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "num_cuda": num_cuda,
    }


def _storable(tensor: torch.Tensor, seen: set[tuple[str, int]]) -> torch.Tensor:
    """A CPU, contiguous tensor that shares memory with no earlier one (safetensors refuses sharing)."""
    tensor = tensor.detach()
    ptr = (str(tensor.device), tensor.untyped_storage().data_ptr())
    if ptr in seen and tensor.numel() > 0:
        tensor = tensor.clone()  # tied weights: a copy; loading writes it into the one shared parameter
    seen.add(ptr)
    return tensor.cpu().contiguous()


def _check_name(kind: str, name: str) -> None:
    if not name or "/" in name:
        raise InputError(f"{kind} name {name!r} must be non-empty and contain no '/'")


# ----------------------------------------------------------------------------- saving


def save_checkpoint(
    path: str | Path,
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    meta: dict,
) -> Path:
    """Write modules, optimizers, extra tensors, ``meta`` and RNG states to one file.

    The file is written to ``<path>.tmp`` and renamed over ``path`` only once it
    is complete, so an interrupted or failed save never damages an existing
    checkpoint.

    Args:
        path: the file; ``.safetensors`` is appended if missing.
        modules: modules to save by name (their ``state_dict`` must hold only tensors).
        optimizers: optimizers to save by name.
        extra_tensors: further tensors by name.
        meta: JSON-serialisable dict; must include ``config`` (dict), ``step`` and
            ``algo``, so the checkpoint can rebuild its model. Put an lr schedule's
            ``state_dict()`` here too.

    Returns:
        The path written.

    Raises:
        ValueError: meta lacks a required key or a value cannot be stored.
    """
    path = Path(path)
    if not path.name.endswith(".safetensors"):
        path = path.with_name(path.name + ".safetensors")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise InputError(f"checkpoint meta must include {list(REQUIRED_META)}; missing {missing}")

    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        _check_name("module", name)
        for key, value in module.state_dict().items():
            if not isinstance(value, torch.Tensor):
                raise InputError(
                    f"cannot store module {name!r} in a checkpoint: state_dict entry {key!r} is a "
                    f"{type(value).__name__}, not a tensor"
                )
            tensors[f"model/{name}/{key}"] = value
    optim_state = {}
    for name, optimizer in (optimizers or {}).items():
        _check_name("optimizer", name)
        optim_state[name] = _encode(optimizer.state_dict(), f"optim/{name}", tensors)
    for name, tensor in (extra_tensors or {}).items():
        _check_name("extra tensor", name)
        tensors[f"extra/{name}"] = tensor
    header = {
        "format": FORMAT,
        "version": VERSION,
        "created": time.time(),
        "torch": torch.__version__,
        "meta": meta,
        "modules": list(modules),
        "optimizers": optim_state,
        "extra": list(extra_tensors or {}),
        "rng": _rng_state(tensors),
    }
    try:
        header_json = json.dumps(header)
    except (TypeError, ValueError) as exc:
        raise InputError(f"checkpoint meta must be JSON-serialisable: {exc}") from exc
    seen: set[tuple[str, int]] = set()
    tensors = {key: _storable(t, seen) for key, t in tensors.items()}

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        data = safetensors.torch.save(tensors, metadata={HEADER_KEY: header_json})
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- loading


def earlier_checkpoints_hint(path: Path) -> str:
    """Advice naming the earlier checkpoints kept beside a damaged one, if there are any."""
    run_dir = path.parent.parent if path.parent.name == HISTORY else path.parent
    # A hard link of the damaged file (checkpoint.safetensors and its step file) is no way out.
    kept = [p for p in sorted((run_dir / HISTORY).glob("step-*.safetensors"))
            if not (path.exists() and os.path.samefile(p, path))]
    if not kept:
        return "no earlier checkpoint of this run is kept; start the run again"
    return f"use an earlier checkpoint: --resume {kept[-1]}"



def _read_header(path: Path) -> tuple[dict, dict]:
    """Validate the file's framing and return (safetensors header, rlgen header).

    Reads only the header bytes; raises ``CheckpointError`` saying what is wrong.
    """
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path (checkpoints end in .safetensors)")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass one .safetensors file inside it")
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(
                f"checkpoint {path} is truncated ({size} bytes); the save was interrupted, {earlier_checkpoints_hint(path)}"
            )
        (header_len,) = struct.unpack("<Q", prefix)
        raw = f.read(min(header_len, _MAX_HEADER_BYTES))
    if header_len > _MAX_HEADER_BYTES or not raw.startswith(b"{"):
        raise CheckpointError(f"{path} is not a safetensors file; pass a checkpoint written by rlgen")
    if len(raw) < header_len:
        raise CheckpointError(
            f"checkpoint {path} is truncated (its header is cut off at {size} bytes); "
            f"the save was interrupted, {earlier_checkpoints_hint(path)}"
        )
    try:
        st_header = json.loads(raw)
    except ValueError:
        raise CheckpointError(
            f"{path} is not a safetensors file (unreadable header); pass a checkpoint written by rlgen"
        ) from None
    if not isinstance(st_header, dict):
        raise CheckpointError(f"{path} is not a safetensors file; pass a checkpoint written by rlgen")
    try:
        data_end = max((v["data_offsets"][1] for k, v in st_header.items() if k != "__metadata__"), default=0)
    except (KeyError, IndexError, TypeError):
        raise CheckpointError(f"{path} is not a safetensors file; pass a checkpoint written by rlgen") from None
    expected = 8 + header_len + data_end
    if size < expected:
        raise CheckpointError(
            f"checkpoint {path} is truncated ({size} of {expected} bytes); "
            f"the save was interrupted, {earlier_checkpoints_hint(path)}"
        )
    text = (st_header.get("__metadata__") or {}).get(HEADER_KEY)
    if text is None:
        raise CheckpointError(
            f"{path} is a safetensors file but not an rlgen checkpoint (no 'rlgen' header); "
            "it may be bare weights, pass a checkpoint saved by rlgen training"
        )
    try:
        header = json.loads(text)
    except ValueError:
        raise CheckpointError(f"checkpoint {path} has a corrupt rlgen header; {earlier_checkpoints_hint(path)}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has an 'rlgen' header of an unknown format; pass a checkpoint saved by rlgen")
    if header.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {header['version']}, newer than this rlgen "
            f"understands ({VERSION}); upgrade rlgen"
        )
    return st_header, header


def checkpoint_info(path: str | Path) -> dict:
    """Summarise a checkpoint from its header alone (no tensor data is read).

    Returns:
        ``{"path", "bytes", "created", "torch", "meta", "modules": {name: number of
        parameters and buffer elements}, "optimizers": [names], "extra": [names]}``.

    Raises:
        CheckpointError: the file is missing, truncated or not an rlgen checkpoint.
    """
    path = Path(path)
    st_header, header = _read_header(path)
    sizes = {name: 0 for name in header["modules"]}
    for key, spec in st_header.items():
        parts = key.split("/", 2)
        if parts[0] == "model" and len(parts) == 3 and parts[1] in sizes:
            sizes[parts[1]] += int(np.prod(spec["shape"], dtype=np.int64))
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "created": header["created"],
        "torch": header["torch"],
        "meta": header["meta"],
        "modules": sizes,
        "optimizers": list(header["optimizers"]),
        "extra": list(header["extra"]),
    }


def check_module_shapes(path: str | Path, name: str, build) -> None:
    """Check that ``build()`` makes a module whose tensors match module ``name`` in the file, building it
    on the meta device (no memory), before anyone builds it for real from a header's config.

    Raises:
        CheckpointError: a tensor is missing, extra or of another shape; the header does not fit the file.
    """
    path = Path(path)
    st_header, _ = _read_header(path)
    prefix = f"model/{name}/"
    stored = {k[len(prefix):]: tuple(v["shape"]) for k, v in st_header.items() if k.startswith(prefix)}
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    bad = sorted(k for k in expected.keys() | stored.keys() if expected.get(k) != stored.get(k))
    if bad:
        key = bad[0]
        raise CheckpointError(
            f"checkpoint {path}: its config asks for {name}.{key} of shape {expected.get(key)}, the file holds "
            f"{stored.get(key)}; the header does not fit the stored tensors (the file was altered or is not rlgen's)"
        )


@dataclass
class Checkpoint:
    """A loaded checkpoint. Apply its parts to freshly built objects with the methods.

    Attributes:
        path: where it was read from.
        meta: the ``meta`` dict given to :func:`save_checkpoint`.
        tensors: every stored tensor by its full key (``model/...``, ``extra/...``).
        header: the whole rlgen header (meta, optimizer layouts, RNG states).
    """

    path: Path
    meta: dict
    tensors: dict[str, torch.Tensor]
    header: dict = field(repr=False)

    @property
    def extra(self) -> dict[str, torch.Tensor]:
        """The ``extra_tensors`` given to :func:`save_checkpoint`, by name."""
        return {name: self.tensors[f"extra/{name}"] for name in self.header["extra"]}

    def load_module(self, name: str, module: nn.Module) -> None:
        """Copy the weights saved under ``name`` into ``module`` (strict: keys and shapes must match)."""
        if name not in self.header["modules"]:
            raise CheckpointError(
                f"checkpoint {self.path} has no module {name!r}; it has: {', '.join(self.header['modules']) or 'none'}"
            )
        prefix = f"model/{name}/"
        state = {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        expected = module.state_dict()
        missing = sorted(expected.keys() - state.keys())
        unexpected = sorted(state.keys() - expected.keys())
        mismatched = [
            f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and isinstance(v, torch.Tensor) and state[k].shape != v.shape
        ]
        if missing or unexpected or mismatched:
            raise CheckpointError(
                f"module {name!r} in checkpoint {self.path} does not match the model built from the config "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {mismatched[:5]}); "
                "build the model from the checkpoint's own config"
            )
        module.load_state_dict(state, strict=True)

    def load_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """Restore the optimizer state saved under ``name`` (moments, step counts, lr).

        Build any lr schedule on ``optimizer`` before calling this, then load the
        schedule's state, so the restored lr is not reset by the schedule.
        """
        encoded = self.header["optimizers"].get(name)
        if encoded is None:
            raise CheckpointError(
                f"checkpoint {self.path} has no optimizer {name!r}; "
                f"it has: {', '.join(self.header['optimizers']) or 'none'}"
            )
        try:
            optimizer.load_state_dict(_decode(encoded, self.tensors))
        except (ValueError, KeyError) as exc:
            raise CheckpointError(
                f"optimizer {name!r} in checkpoint {self.path} does not fit this optimizer: {exc}"
            ) from exc

    def restore_rng(self) -> None:
        """Put python, numpy, torch CPU and CUDA generators back in their saved states."""
        rng = self.header["rng"]
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(self.tensors["rng/torch_cpu"].cpu())
        if torch.cuda.is_available():
            # A run resumed on fewer GPUs restores the ones it has.
            for i in range(min(rng["num_cuda"], torch.cuda.device_count())):
                torch.cuda.set_rng_state(self.tensors[f"rng/cuda/{i}"].cpu(), i)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the ``.safetensors`` file.
        map_location: device to load tensors onto.

    Raises:
        CheckpointError: the file is missing, truncated, not safetensors, or not
            written by rlgen; the message says which and what to do.
    """
    path = Path(path)
    _, header = _read_header(path)
    device = str(torch.device(map_location))
    try:
        with safetensors.safe_open(str(path), framework="pt", device=device) as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise CheckpointError(f"checkpoint {path} is corrupt ({exc}); {earlier_checkpoints_hint(path)}") from exc
    return Checkpoint(path=path, meta=header["meta"], tensors=tensors, header=header)
