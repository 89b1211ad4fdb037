"""Pick the compute device and seed every random number generator.

Both run once at the top of every training command, so a bad ``--device`` fails
before any work is done, with a message that says what to pass instead.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator

import numpy as np
import torch

from rlgen.errors import InputError

_DEVICE_SPEC = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a ``--device`` string into a ``torch.device`` that exists on this machine.

    Args:
        spec: ``"auto"`` (cuda > mps > cpu), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Raises:
        ValueError: the spec is malformed, or names a device this machine does not have.
    """
    match = _DEVICE_SPEC.match(spec.strip().lower()) if isinstance(spec, str) else None
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise InputError(
            f"--device {spec!r} is not a valid device; use auto, cpu, cuda, cuda:N (N = GPU index) or mps"
        )
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise InputError(
                "--device mps is not available: this machine has no Apple MPS backend; use --device cpu or auto"
            )
        return torch.device("mps")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wanted = int(index) if index is not None else 0
    if wanted >= count:
        name = f"cuda:{index}" if index is not None else "cuda"
        raise InputError(
            f"--device {name} is not available: this machine has {count} CUDA devices; use --device cpu or auto"
        )
    return torch.device("cuda", wanted) if index is not None else torch.device("cuda")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and every GPU).

    Environments and ``numpy.random.Generator`` objects have their own RNGs and
    must be seeded by their owners (e.g. ``env.reset(seed=seed)``).

    Args:
        seed: the run's seed.
        deterministic: also ask torch and cuDNN for deterministic kernels (slower on
            GPU). Kernels without a deterministic version only warn. When False the
            flags are set back to torch's fast defaults, so the call fully decides them.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    set_deterministic(deterministic)


def set_deterministic(deterministic: bool) -> None:
    """Ask torch and cuDNN for deterministic kernels, or set their fast defaults back."""
    if deterministic:
        # cuBLAS needs this workspace setting for reproducible matmuls (CUDA >= 10.2).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic or torch.are_deterministic_algorithms_enabled():
        # Only when it changes something: the call imports torch._inductor (seconds).
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Use ``count`` torch CPU threads inside the block (None or 0: leave as is).

    Small networks run faster on one thread: their matmuls are too small to
    split, and the threads only contend (seen as 3-5x slowdowns on 2 busy cores).
    """
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
