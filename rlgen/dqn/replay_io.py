"""Saving and loading replay buffers (transition and sequence alike) as safetensors, no pickle.

A buffer gives ``state_arrays() -> (arrays, meta)`` and takes them back with
``load_state_arrays``; this module writes them atomically (temp file, fsync,
rename) with a ``token`` that ties the file to the checkpoint saved with it,
and reads them back checking the file before anything is copied.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as save_bytes

from rlgen.errors import CheckpointError


def save_replay(buffer, path: Path, token: str = "") -> Path:
    """Write ``buffer`` to ``path`` atomically; ``token`` names the checkpoint it belongs to."""
    arrays, meta = buffer.state_arrays()
    data = save_bytes({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={**meta, "token": token})
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replay_token(path: Path) -> str:
    """The token a replay file was saved with (reads the header only)."""
    return _open(path)[0].get("token", "")


def _open(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors has its own error types for truncated or foreign files
        raise CheckpointError(
            f"replay file {path} is unreadable ({str(exc).splitlines()[0]}); the save was cut off. Delete it to "
            "resume with an empty replay (it refills for learning_starts steps; not exact)"
        ) from None
    return meta, arrays


def load_replay(buffer, path: Path) -> str:
    """Fill ``buffer`` from ``path``; returns the file's token."""
    meta, arrays = _open(path)
    expected, _ = buffer.state_arrays()
    if meta.get("kind") != type(buffer).__name__:
        raise CheckpointError(f"replay file {path} holds a {meta.get('kind')}, this run uses a {type(buffer).__name__}")
    for name, array in expected.items():
        got = arrays.get(name)
        if got is None or got.shape != array.shape or got.dtype != array.dtype:
            shape = None if got is None else (got.shape, str(got.dtype))
            raise CheckpointError(
                f"replay file {path}: {name} is {shape}, this run's buffer needs {(array.shape, str(array.dtype))}; "
                "resume with the run's own buffer_size, num_envs and replay settings"
            )
    buffer.load_state_arrays(arrays, meta)
    return meta.get("token", "")
