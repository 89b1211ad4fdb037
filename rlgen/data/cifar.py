"""CIFAR-10, binary version (``cifar-10-batches-bin``); never the pickled one.

Each record is 3073 bytes: one label byte (0..9), then 1024 red, 1024 green and
1024 blue bytes, each plane a 32x32 image in row-major order. The binary
version needs no ``pickle``, so loading a file cannot run code.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rlgen.errors import InputError, RlgenError

RECORD_BYTES = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"


class CifarFormatError(RlgenError):
    """A CIFAR-10 binary batch is truncated or holds labels outside 0..9."""


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary batch file.

    Returns:
        images: (N, 3, 32, 32) uint8, channel-first.
        labels: (N,) int64 in 0..9.
    """
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise CifarFormatError(
            f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 "
            "records (truncated download, or not the binary version?)"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise CifarFormatError(
            f"{path}: label {int(labels.max())} outside 0..9; is this a CIFAR-100 file?"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32)  # (N, C, H, W)
    return np.ascontiguousarray(images), labels


def write_cifar_batch(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write (N, 3, 32, 32) uint8 images and (N,) labels as one binary batch (for tests and tools)."""
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != (3, 32, 32) or labels.shape != (images.shape[0],):
        raise InputError(
            f"write_cifar_batch: expected images (N, 3, 32, 32) and labels (N,); got "
            f"{images.shape} and {labels.shape}"
        )
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
    path = Path(path)
    path.write_bytes(records.tobytes())
    return path


def read_class_names(directory: str | os.PathLike) -> list[str] | None:
    """The class names in ``batches.meta.txt`` (one per line), or None if the file is absent."""
    meta = Path(directory) / META_FILE
    if not meta.is_file():
        return None
    return [line.strip() for line in meta.read_text().splitlines() if line.strip()]


def load_cifar10(directory: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the batches of one split found in ``directory``.

    Returns:
        images (N, 3, 32, 32) uint8 and labels (N,) int64; N = 50000 for "train", 10000 for "test".
    """
    names = TRAIN_FILES if split == "train" else TEST_FILES
    parts = [read_cifar_batch(Path(directory) / name) for name in names]
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
    )
