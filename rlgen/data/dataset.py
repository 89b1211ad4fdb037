"""The in-memory image dataset and the few tensor operations every model needs.

The whole dataset lives in one uint8 tensor (Fashion-MNIST's 60,000 images are
47 MB), so batching is indexing with a random permutation on the device: no
DataLoader, no worker processes, and conversion to float happens on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from rlgen.errors import InputError


@dataclass
class ImageDataset:
    """One split of an image dataset.

    Attributes:
        name: dataset name (``fashion-mnist``) or the folder's name.
        images: (N, C, H, W) uint8; single-channel data stays single-channel.
        labels: (N,) int64; all zeros for an unlabeled folder.
        num_classes: number of classes, 0 when unlabeled.
        class_names: one name per class.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, (self.images.dtype, self.images.shape)
        assert self.labels.shape == (self.images.shape[0],), (self.labels.shape, self.images.shape)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, indices: torch.Tensor | np.ndarray) -> ImageDataset:
        """The images at ``indices`` (same name and classes)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageDataset(self.name, self.images[idx], self.labels[idx], self.num_classes, list(self.class_names))


def to_model_range(images_uint8: torch.Tensor, kind: Literal["symmetric", "unit"] = "symmetric") -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] ("symmetric", GANs and diffusion) or [0, 1] ("unit", Bernoulli VAE)."""
    if images_uint8.dtype != torch.uint8:
        raise InputError(f"to_model_range expects uint8 images (0..255); got dtype {images_uint8.dtype}")
    x = images_uint8.float()
    if kind == "symmetric":
        return x / 127.5 - 1.0
    if kind == "unit":
        return x / 255.0
    raise InputError(f"kind must be 'symmetric' or 'unit'; got {kind!r}")


def from_model_range(x: torch.Tensor, kind: Literal["symmetric", "unit"] = "symmetric") -> torch.Tensor:
    """Model outputs -> float in [0, 1] for saving or evaluating (values outside the range are clamped)."""
    if kind == "symmetric":
        x = (x.float() + 1.0) / 2.0
    elif kind == "unit":
        x = x.float()
    else:
        raise InputError(f"kind must be 'symmetric' or 'unit'; got {kind!r}")
    return x.clamp(0.0, 1.0)


def resize_images(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize (N, C, H, W) uint8 images to (N, C, S, S).

    A small even growth (28 -> 32: at most a quarter of the side) zero-pads
    equally on each side, which keeps every pixel exact -- the usual way to feed
    MNIST-size images to a UNet that halves the size several times. Any other
    change is a bilinear resize (antialiased when shrinking).
    """
    if image_size <= 0:
        raise InputError(f"image_size must be positive; got {image_size}")
    n, c, h, w = images.shape
    if (h, w) == (image_size, image_size):
        return images
    grow = image_size - h
    if h == w and grow > 0 and grow % 2 == 0 and grow <= h // 4:
        p = grow // 2
        return F.pad(images, (p, p, p, p))  # (N, C, S, S), zeros = the black background
    x = F.interpolate(
        images.float(), size=(image_size, image_size), mode="bilinear",
        align_corners=False, antialias=image_size < max(h, w),
    )
    return x.round().clamp(0, 255).to(torch.uint8)


def holdout_indices(labels: np.ndarray, split: Literal["train", "test"], test_fraction: float = 0.2) -> np.ndarray:
    """A fixed, class-stratified split for data that ships without one (digits, plain folders).

    The same ``labels`` always give the same split (seed 0), and roughly
    ``test_fraction`` of every class goes to "test".
    """
    rng = np.random.default_rng(0)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        test.append(members[: int(round(len(members) * test_fraction))])
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[np.concatenate(test)] = True
    return np.flatnonzero(test_mask if split == "test" else ~test_mask)


def batches(
    dataset: ImageDataset,
    batch_size: int,
    generator: torch.Generator | None,
    device: torch.device | str,
    drop_last: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled minibatches, reshuffled every epoch.

    Args:
        dataset: the split to draw from; copied to ``device`` once.
        batch_size: images per batch.
        generator: a CPU ``torch.Generator`` for the shuffling (seeded runs repeat exactly).
        device: where the batches live.
        drop_last: skip each epoch's final partial batch (so every batch has ``batch_size`` items).

    Yields:
        (images (B, C, H, W) uint8, labels (B,) int64), both on ``device``.
    """
    n = len(dataset)
    if batch_size <= 0:
        raise InputError(f"batch_size must be positive; got {batch_size}")
    if drop_last and batch_size > n:
        raise InputError(
            f"batch_size {batch_size} is larger than the dataset '{dataset.name}' ({n} images); "
            "use a smaller batch size"
        )
    device = torch.device(device)
    images = dataset.images.to(device)
    labels = dataset.labels.to(device)
    end = n - n % batch_size if drop_last else n
    while True:
        perm = torch.randperm(n, generator=generator).to(device, non_blocking=True)
        for start in range(0, end, batch_size):
            idx = perm[start : start + batch_size]
            yield images[idx], labels[idx]
