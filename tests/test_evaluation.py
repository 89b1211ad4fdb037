"""FID / KID against hand computations, and the digits domain classifier behind evaluate_samples."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from rlgen.data import load_dataset, to_model_range
from rlgen.errors import RlgenError
from rlgen.generative.evaluation import (
    ClassifierConfig,
    classifier_cache_path,
    evaluate_samples,
    fid,
    frechet_distance,
    inception_fid,
    kid,
    load_or_train_classifier,
)

TINY = ClassifierConfig(channels=[16, 32], features_dim=64, min_steps=250, batch_size=64)


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory, one_thread):
    cache = tmp_path_factory.mktemp("cache")
    return cache, load_or_train_classifier("digits", cache_dir=cache, config=TINY)


# ----------------------------------------------------------------------------- FID


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return q


def test_fid_of_identical_features_is_zero():
    feats = torch.randn(500, 16)
    assert abs(fid(feats, feats)) < 1e-8


def test_frechet_distance_matches_closed_form_for_known_gaussians():
    rng = np.random.default_rng(0)
    d = 5
    q = random_rotation(d, rng)
    a, b = rng.uniform(0.5, 3.0, d), rng.uniform(0.5, 3.0, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    # Covariances sharing eigenvectors: tr((S1 S2)^1/2) = sum sqrt(a_i b_i), so
    # d = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    sigma1, sigma2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(closed, rel=1e-10)

    # General covariances: against the textbook formula with scipy's sqrtm.
    l1, l2 = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s1, s2 = l1 @ l1.T + 0.1 * np.eye(d), l2 @ l2.T + 0.1 * np.eye(d)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)

    # From samples: converges to the population value.
    x = rng.multivariate_normal(mu1, sigma1, size=40_000)
    y = rng.multivariate_normal(mu2, sigma2, size=40_000)
    assert fid(x, y) == pytest.approx(closed, rel=0.03)


# ----------------------------------------------------------------------------- KID


def test_kid_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3)) + 0.3

    def k(u, v):
        return (u @ v / 3 + 1) ** 3

    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    mean, std = kid(x, y, subsets=3, subset_size=6)  # whole sets: every subset is a permutation
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10) and std < 1e-10


def test_kid_same_distribution_near_zero_shifted_positive():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    same, same_std = kid(a, b, subsets=20, subset_size=400)
    shifted, shifted_std = kid(a, b + 0.5, subsets=20, subset_size=400)
    assert shifted > 10 * shifted_std > 0
    assert abs(same) < 0.02 * shifted and abs(same) < 3 * same_std


# ----------------------------------------------------------------------------- domain classifier


def test_digits_classifier_is_accurate_and_cached(digits_classifier, monkeypatch):
    cache, model = digits_classifier
    assert model.test_accuracy > 0.9
    path = classifier_cache_path("digits", 8, cache)
    assert path == cache / "classifiers" / "digits-8.safetensors" and path.is_file()
    monkeypatch.setenv("RLGEN_CACHE", str(cache))
    assert classifier_cache_path("digits", 8) == path

    again = load_or_train_classifier("digits", cache_dir=cache, config=TINY)  # loads, does not retrain
    test = to_model_range(load_dataset("digits", "test").images, "unit")
    assert torch.equal(again.features(test), model.features(test))
    assert again.features(test).shape == (len(test), TINY.features_dim)
    assert again.test_accuracy == model.test_accuracy


def test_domain_fid_separates_real_images_from_noise(digits_classifier):
    cache, model = digits_classifier
    train = load_dataset("digits", "train")
    real = to_model_range(train.images[-300:], "unit")
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    on_real = evaluate_samples(real, "digits", labels=train.labels[-300:], classifier=model, kid_subsets=20)
    on_noise = evaluate_samples(noise, "digits", labels=3, classifier=model, kid_subsets=20)
    # The floor (a train subset of the same size vs test) is what real images score.
    assert on_real["fid_floor"] == on_noise["fid_floor"]
    assert on_real["fid"] < 2 * on_real["fid_floor"]
    assert on_noise["fid"] > 20 * on_noise["fid_floor"]
    assert on_noise["kid"] > 20 * max(on_noise["kid_floor"], on_noise["kid_floor_std"])
    assert on_real["class_match"] > 0.9
    assert on_real["num_samples"] == 300 and on_real["num_reference"] == len(load_dataset("digits", "test"))


def test_evaluate_samples_rejects_bad_input_and_missing_torchmetrics(digits_classifier, monkeypatch):
    _, model = digits_classifier
    with pytest.raises(ValueError, match=r"\[0, 1\].*from_model_range"):
        evaluate_samples(torch.rand(10, 1, 8, 8) * 2 - 1, "digits", classifier=model)
    with pytest.raises(ValueError, match="3 channels but .digits. has 1"):
        evaluate_samples(torch.rand(10, 3, 8, 8), "digits", classifier=model)
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # as if not installed
    with pytest.raises(RlgenError, match="torchmetrics is not installed.*pip install torchmetrics"):
        evaluate_samples(torch.rand(10, 1, 8, 8), "digits", classifier=model, inception_weights="w.pth")


def test_inception_fid_feeds_torchmetrics_rgb_unit_images_in_chunks(tmp_path, monkeypatch):
    """The torchmetrics call itself needs Inception weights and torchvision (not here): a stand-in
    metric checks what rlgen feeds it - the weights path, 3-channel [0, 1] batches, real first."""
    import rlgen.generative.evaluation.evaluate as evaluate_module

    calls = []

    class RecordingFID:
        def __init__(self, feature, normalize, feature_extractor_weights_path):
            calls.append(("init", feature, normalize, feature_extractor_weights_path))

        def to(self, device):
            return self

        def update(self, images, real):
            calls.append(("update", tuple(images.shape), float(images.min()), float(images.max()), real))

        def compute(self):
            return torch.tensor(7.5)

    monkeypatch.setattr(evaluate_module, "_fid_metric_class", lambda: RecordingFID)
    weights = tmp_path / "pt_inception.pth"
    with pytest.raises(RlgenError, match="do not exist"):
        inception_fid(torch.rand(4, 1, 8, 8), torch.rand(6, 1, 8, 8), weights)
    weights.write_bytes(b"weights")
    samples, reference = torch.rand(5, 1, 8, 8), torch.rand(6, 1, 8, 8)
    assert inception_fid(samples, reference, weights, batch_size=4) == 7.5
    assert calls[0] == ("init", 2048, True, str(weights))
    updates = [c for c in calls if c[0] == "update"]
    assert [(u[1][0], u[4]) for u in updates] == [(4, True), (2, True), (4, False), (1, False)]
    assert all(u[1][1:] == (3, 8, 8) and 0 <= u[2] and u[3] <= 1 for u in updates)
