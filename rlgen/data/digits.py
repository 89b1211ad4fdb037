"""scikit-learn's 8x8 handwritten digits: the embedded dataset that needs no download.

1,797 images with values 0..16; scaled here to 0..255 uint8 so every dataset
reaches the models in the same form.
"""

from __future__ import annotations

import numpy as np


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits.

    Returns:
        images (1797, 1, 8, 8) uint8 in 0..255, labels (1797,) int64 in 0..9.
    """
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    return images, bunch.target.astype(np.int64)
