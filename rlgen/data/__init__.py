"""Image datasets for the generative models: one call from a name or a folder to uint8 tensors.

>>> train = load_dataset("fashion-mnist", "train", image_size=32)   # (60000, 1, 32, 32) uint8
>>> x = to_model_range(next(batches(train, 128, gen, "cuda"))[0])    # (128, 1, 32, 32) in [-1, 1]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from rlgen.data.cifar import load_cifar10, read_class_names
from rlgen.data.dataset import (
    ImageDataset,
    batches,
    from_model_range,
    holdout_indices,
    resize_images,
    to_model_range,
)
from rlgen.data.digits import load_digits_arrays
from rlgen.data.folder import has_split_folders, load_image_folder
from rlgen.data.frames import load_frames
from rlgen.data.idx import read_idx, write_idx
from rlgen.data.registry import (
    DATASETS,
    DatasetSpec,
    Download,
    cache_root,
    download_dataset,
    find_files,
    resolve_name,
    unknown_name_error,
)
from rlgen.errors import InputError, RlgenError

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "Download",
    "ImageDataset",
    "batches",
    "cache_root",
    "download_dataset",
    "from_model_range",
    "load_dataset",
    "read_idx",
    "resize_images",
    "to_model_range",
    "write_idx",
]


def _load_named(spec: DatasetSpec, split: str, data_dir: str | os.PathLike | None, download: bool):
    """(images (N, C, H, W) uint8, labels (N,) int64, class names) of a registered dataset."""
    if spec.format == "digits":
        images, labels = load_digits_arrays()
        keep = holdout_indices(labels, split)  # digits ships no test split: a fixed 20% is held out
        return images[keep], labels[keep], list(spec.class_names)
    try:
        files = find_files(spec, split, data_dir)
    except RlgenError:
        if not download:
            raise
        download_dataset(spec.name, Path(data_dir).expanduser() / spec.name if data_dir else None)
        files = find_files(spec, split, data_dir)
    if spec.format == "idx":
        image_file, label_file = (files[name] for name in spec.files[split])
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise RlgenError(
                f"{image_file} and {label_file} do not pair up: images {images.shape}, labels {labels.shape}; "
                "expected (N, H, W) images and (N,) labels"
            )
        return images[:, None], labels.astype(np.int64), list(spec.class_names)  # (N, 1, H, W)
    assert spec.format == "cifar_bin", spec.format
    folder = next(iter(files.values())).parent
    images, labels = load_cifar10(folder, split)
    return images, labels, read_class_names(folder) or list(spec.class_names)


def _load_folder(root: Path, split: str, image_size: int | None):
    """A PNG/JPEG folder; without train/ and test/ subfolders a fixed 20% is the test split."""
    if has_split_folders(root):
        return load_image_folder(root / split, image_size)
    images, labels, class_names = load_image_folder(root, image_size)
    keep = holdout_indices(labels, split)
    return images[keep], labels[keep], class_names


def load_dataset(
    name_or_path: str,
    split: Literal["train", "test"] = "train",
    data_dir: str | None = None,
    image_size: int | None = None,
    download: bool = False,
) -> ImageDataset:
    """Load one split of a named dataset or of an image folder into memory.

    Args:
        name_or_path: ``fashion-mnist``, ``mnist``, ``digits``, ``cifar10``, a folder of
            PNG/JPEG images (subfolders = classes), or a ``rlgen collect-frames`` file.
        split: "train" or "test" (digits and plain folders hold out a fixed, stratified 20%).
        data_dir: searched first (the folder itself or its ``<name>`` subfolder); then
            ``$RLGEN_DATA``, ``/usr/share/datasets/<name>``, ``~/.cache/rlgen/datasets/<name>``.
        image_size: resize to (image_size, image_size); 28 -> 32 zero-pads 2 px per side.
        download: fetch missing files (into ``data_dir/<name>`` or the user cache), checksums verified.

    Returns:
        An ImageDataset with images (N, C, H, W) uint8 and labels (N,) int64.

    Raises:
        UnknownNameError: neither a known name nor an existing folder (suggests a close match).
        RlgenError: the files are missing (says where rlgen looked and how to get them) or corrupt.
    """
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test'; got {split!r}")
    spec = resolve_name(name_or_path)
    path = Path(name_or_path).expanduser()
    if spec is not None and not (path.is_dir() and os.sep in name_or_path):
        images, labels, class_names = _load_named(spec, split, data_dir, download)
        name = spec.name
    elif path.is_dir():
        images, labels, class_names = _load_folder(path, split, image_size)
        name = path.resolve().name
    elif path.is_file() and path.suffix == ".safetensors":
        images, labels, class_names = load_frames(path, split)  # `rlgen collect-frames`
        name = path.stem
    elif os.sep in name_or_path or name_or_path.startswith((".", "~")):
        raise RlgenError(f"image folder {path} does not exist")
    else:
        raise unknown_name_error(name_or_path)
    images_t = torch.from_numpy(np.ascontiguousarray(images))
    if image_size is not None:
        images_t = resize_images(images_t, image_size)
    return ImageDataset(
        name=name,
        images=images_t,
        labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
        num_classes=len(class_names),
        class_names=class_names,
    )
