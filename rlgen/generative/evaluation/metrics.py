"""Fréchet distance (FID) and kernel distance (KID) between two sets of feature vectors.

Both follow the definitions of the papers (Heusel et al., 2017; Bińkowski et
al., 2018) and work on any features: Inception's, or the small per-dataset
classifier rlgen trains. Everything is computed in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from rlgen.errors import InputError


def _as_f64(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"{name} must be a (N, D) feature matrix with N >= 2; got shape {x.shape}")
    return x


def gaussian_stats(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features."""
    x = _as_f64(features, "features")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2).

    d = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    tr((sigma1 sigma2)^(1/2)) equals tr((s1 sigma2 s1)^(1/2)) with s1 = sigma1^(1/2), and
    s1 sigma2 s1 is symmetric PSD, so an eigen-decomposition gives it exactly,
    with no complex round-off as a general matrix square root (``sqrtm``) produces.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise InputError(
            f"frechet_distance: shapes do not match: mu {mu1.shape} / {mu2.shape}, "
            f"sigma {sigma1.shape} / {sigma2.shape}"
        )
    s1 = _sqrt_psd(sigma1)
    middle = s1 @ sigma2 @ s1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid(feat_a: torch.Tensor | np.ndarray, feat_b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets (N may differ)."""
    a, b = _as_f64(feat_a, "feat_a"), _as_f64(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"fid: feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel k(u, v) = (u.v / D + 1)^3; x and y are (m, D)."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3  # (m, m)
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.mean())


def kid(
    feat_a: torch.Tensor | np.ndarray,
    feat_b: torch.Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel distance: unbiased polynomial-kernel MMD^2 averaged over random subsets.

    Args:
        feat_a, feat_b: (N_a, D) and (N_b, D) features.
        subsets: number of random subset pairs.
        subset_size: items per subset, capped at min(N_a, N_b).
        seed: for the subset draws (same seed, same value).

    Returns:
        (mean, std) over the subsets. Unbiased, so the mean is ~0 (and can be
        slightly negative) when both sets come from one distribution.
    """
    a, b = _as_f64(feat_a, "feat_a"), _as_f64(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"kid: feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if subsets < 1:
        raise InputError(f"kid: subsets must be >= 1; got {subsets}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise InputError(f"kid: subset_size must be >= 2; got {subset_size}")
    rng = np.random.default_rng(seed)
    values = np.array([
        _polynomial_mmd2(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
        for _ in range(subsets)
    ])
    return float(values.mean()), float(values.std())
