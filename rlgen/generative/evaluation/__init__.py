"""Evaluation of generated images: domain FID / KID on a cached per-dataset classifier.

``evaluate_samples(samples01, "fashion-mnist")`` gives FID and KID of the
samples vs the test split next to the floor (real train images vs test);
``fid`` / ``kid`` work on any (N, D) features.
"""

from rlgen.generative.evaluation.classifier import (
    ClassifierConfig,
    DomainClassifier,
    classifier_cache_path,
    load_or_train_classifier,
    train_classifier,
)
from rlgen.generative.evaluation.evaluate import evaluate_samples, inception_fid
from rlgen.generative.evaluation.metrics import (
    fid,
    frechet_distance,
    gaussian_stats,
    kid,
)

__all__ = [
    "ClassifierConfig",
    "DomainClassifier",
    "classifier_cache_path",
    "evaluate_samples",
    "fid",
    "frechet_distance",
    "gaussian_stats",
    "inception_fid",
    "kid",
    "load_or_train_classifier",
    "train_classifier",
]
