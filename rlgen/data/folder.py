"""A folder of PNG/JPEG images, read with Pillow.

Layouts understood:

- ``root/<class>/*.png`` -- subfolders are classes (sorted by name, label = index);
- ``root/*.png`` -- unlabeled images;
- either of the above under ``root/train`` and ``root/test`` -- explicit splits
  (without them, the caller holds out a fixed share as the test split).

Grayscale stays single-channel: if every image is grayscale the result has
C = 1, otherwise every image is converted to RGB (C = 3).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from rlgen.errors import RlgenError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = ("1", "L", "I", "I;16", "F")


def _images_in(directory: Path, recursive: bool) -> list[Path]:
    found = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def has_split_folders(root: str | os.PathLike) -> bool:
    """True when ``root`` holds ``train/`` and ``test/`` subfolders (explicit splits)."""
    root = Path(root)
    return (root / "train").is_dir() and (root / "test").is_dir()


def list_image_folder(root: str | os.PathLike) -> tuple[list[Path], list[int], list[str]]:
    """Find the images under ``root`` and their class labels.

    Returns:
        paths, labels (all 0 when unlabeled), class_names ([] when unlabeled).
    """
    root = Path(root)
    if not root.is_dir():
        raise RlgenError(f"image folder {root} does not exist")
    loose = _images_in(root, recursive=False)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _images_in(d, recursive=True))
    if loose and class_dirs:
        raise RlgenError(
            f"{root} has both images ({loose[0].name}, ...) and class subfolders "
            f"({class_dirs[0].name}, ...); put every image in a class subfolder, or none"
        )
    if loose:
        return loose, [0] * len(loose), []
    if not class_dirs:
        raise RlgenError(f"no {'/'.join(IMAGE_SUFFIXES)} images found in {root} or its subfolders")
    paths: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        files = _images_in(d, recursive=True)
        paths += files
        labels += [label] * len(files)
    return paths, labels, [d.name for d in class_dirs]


def _center_square_resize(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((size, size), Image.Resampling.BILINEAR)


def load_image_folder(
    root: str | os.PathLike, image_size: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read every image under ``root`` (one split's folder).

    Images that all share one square size are returned as they are (the caller
    resizes the whole tensor); otherwise ``image_size`` is required and each
    image is center-cropped to a square and resized to it.

    Returns:
        images (N, C, H, W) uint8 with C = 1 (all grayscale) or 3,
        labels (N,) int64, class_names.
    """
    paths, labels, class_names = list_image_folder(root)
    images: list[Image.Image] = []
    for p in paths:
        try:
            with Image.open(p) as im:
                images.append(im.copy())  # copy: the original is unusable once closed
        except OSError as e:
            raise RlgenError(f"cannot read image {p}: {e}") from e
    gray = all(im.mode in _GRAY_MODES for im in images)
    mode = "L" if gray else "RGB"
    sizes = {im.size for im in images}
    uniform_square = len(sizes) == 1 and next(iter(sizes))[0] == next(iter(sizes))[1]
    if not uniform_square and image_size is None:
        examples = ", ".join(f"{p.name}: {im.size[0]}x{im.size[1]}" for p, im in list(zip(paths, images))[:3])
        raise RlgenError(
            f"images in {root} are not all the same square size ({examples}, ...); "
            "pass an image size (--set image_size=N / image_size=N) to crop and resize them"
        )
    arrays = []
    for im in images:
        # 16-bit / float grayscale: scale to 0..255 before the 8-bit conversion.
        if im.mode in ("I", "I;16", "F"):
            a = np.asarray(im, dtype=np.float64)
            hi = 65535.0 if a.max() > 255 else 255.0
            im = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
        im = im.convert(mode)
        if not uniform_square:
            assert image_size is not None
            im = _center_square_resize(im, image_size)
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))  # (C, H, W)
    return np.stack(arrays), np.asarray(labels, dtype=np.int64), class_names
