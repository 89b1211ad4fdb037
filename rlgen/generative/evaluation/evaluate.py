"""Score generated images against a dataset's held-out test split.

The domain FID / KID of samples vs the test images comes with its floor: the
same metric for an equally sized subset of *real* train images vs the same
test images. A perfect generator scores about the floor (FID is biased upward
for small sample counts, so only the gap to the floor is meaningful), and the
floor makes scores from different sample counts readable.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from rlgen.data import load_dataset
from rlgen.errors import InputError, RlgenError
from rlgen.generative.evaluation.classifier import (
    DomainClassifier,
    load_or_train_classifier,
    unit_images,
)
from rlgen.generative.evaluation.metrics import fid, kid

logger = logging.getLogger(__name__)

_TORCHMETRICS_HINT = (
    "Inception FID needs torchmetrics with torch-fidelity (pip install torchmetrics torch-fidelity); "
    "leave out the Inception weights to get the domain FID / KID only"
)


def _fid_metric_class():
    """torchmetrics' FrechetInceptionDistance class, or a clear RlgenError when it is not installed."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as e:
        raise RlgenError(f"torchmetrics is not installed: {_TORCHMETRICS_HINT}") from e
    return FrechetInceptionDistance


def _inception_weights_file(weights_path: str | Path) -> Path:
    weights_path = Path(weights_path).expanduser()
    if not weights_path.is_file():
        raise RlgenError(f"Inception weights {weights_path} do not exist; pass the path of the weights file")
    return weights_path


def inception_fid(
    samples01: torch.Tensor,
    reference01: torch.Tensor,
    weights_path: str | Path,
    device: torch.device | str = "cpu",
    batch_size: int = 100,
) -> float:
    """torchmetrics' Inception-v3 FID with user-supplied weights (pt_inception-2015-12-05 format).

    Args:
        samples01, reference01: (N, C, H, W) floats in [0, 1]; one channel is repeated to three,
            and torchmetrics resizes to 299 x 299.
        weights_path: the FID Inception weights file (torch-fidelity's format).
    """
    metric_cls = _fid_metric_class()
    weights_path = _inception_weights_file(weights_path)
    try:
        metric = metric_cls(feature=2048, normalize=True, feature_extractor_weights_path=str(weights_path))
    except ModuleNotFoundError as e:  # torchmetrics raises this when torch-fidelity is missing
        raise RlgenError(f"{e}: {_TORCHMETRICS_HINT}") from e
    except TypeError as e:  # torchmetrics too old for feature_extractor_weights_path
        raise RlgenError(f"this torchmetrics cannot load custom Inception weights ({e}); upgrade torchmetrics") from e
    metric = metric.to(device)
    for images, real in ((reference01, True), (samples01, False)):
        for chunk in images.split(batch_size):
            chunk = chunk.to(device).float().clamp(0, 1)
            metric.update(chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk, real=real)
    return float(metric.compute())


def evaluate_samples(
    samples01: torch.Tensor,
    dataset_name: str,
    *,
    labels: torch.Tensor | int | None = None,
    data_dir: str | None = None,
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    classifier: DomainClassifier | None = None,
    inception_weights: str | Path | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Domain FID / KID of generated images vs the test split, with the real-data floor beside them.

    Args:
        samples01: (N, C, H, W) generated images in [0, 1] (``from_model_range`` gives these);
            H sets the image size the test images are brought to (28 -> 32 pads, as in training).
        dataset_name: the dataset the model was trained on (name or image folder).
        labels: the class requested for each sample ((N,) or one int for all) from a
            class-conditional model; adds ``class_match``, the share the classifier agrees with.
        data_dir: passed to ``load_dataset``.
        device: where the classifier runs.
        cache_dir: classifier cache (default ``$RLGEN_CACHE`` / ``~/.cache/rlgen``).
        classifier: use this one instead of the cached one.
        inception_weights: path of Inception-v3 FID weights; adds ``inception_fid`` (needs torchmetrics).
        kid_subsets, kid_subset_size: KID's subset count and size (capped at the set sizes).
        seed: for the train subset and the KID subsets.

    Returns:
        ``fid``, ``kid``, ``kid_std`` (samples vs test); ``fid_floor``, ``kid_floor``,
        ``kid_floor_std`` (a random train subset of N real images vs test); ``num_samples``,
        ``num_reference``, ``feature_dim``, ``classifier_accuracy``; and ``class_match``
        and ``inception_fid`` when asked for.
    """
    if samples01.ndim != 4 or samples01.shape[0] < 2:
        raise InputError(f"samples must be (N, C, H, W) with N >= 2; got shape {tuple(samples01.shape)}")
    lo, hi = float(samples01.min()), float(samples01.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(
            f"samples must be in [0, 1]; got values in [{lo:.3f}, {hi:.3f}] (convert with "
            "rlgen.data.from_model_range first)"
        )
    if inception_weights is not None:
        _fid_metric_class()  # fail now, not after minutes of feature extraction
        _inception_weights_file(inception_weights)
    n, c, h, w = samples01.shape
    if h != w:
        raise InputError(f"samples must be square; got {h}x{w}")
    test = load_dataset(dataset_name, "test", data_dir=data_dir, image_size=h)
    if test.shape[0] != c:
        raise InputError(f"samples have {c} channels but '{test.name}' has {test.shape[0]}")
    model = classifier if classifier is not None else load_or_train_classifier(
        dataset_name, image_size=h, data_dir=data_dir, cache_dir=cache_dir, device=device
    )
    train = load_dataset(dataset_name, "train", data_dir=data_dir, image_size=h)
    generator = torch.Generator().manual_seed(seed)
    floor_set = train.subset(torch.randperm(len(train), generator=generator)[: min(n, len(train))])

    samples01 = samples01.detach().float().clamp(0, 1)
    feat_test = model.features(unit_images(test))
    feat_gen = model.features(samples01)
    feat_floor = model.features(unit_images(floor_set))
    kid_mean, kid_std = kid(feat_gen, feat_test, kid_subsets, kid_subset_size, seed)
    floor_mean, floor_std = kid(feat_floor, feat_test, kid_subsets, kid_subset_size, seed)
    result = {
        "fid": fid(feat_gen, feat_test),
        "kid": kid_mean,
        "kid_std": kid_std,
        "fid_floor": fid(feat_floor, feat_test),
        "kid_floor": floor_mean,
        "kid_floor_std": floor_std,
        "num_samples": float(n),
        "num_reference": float(len(test)),
        "feature_dim": float(feat_gen.shape[1]),
        "classifier_accuracy": model.test_accuracy,
    }
    if labels is not None:
        wanted = torch.as_tensor(labels, dtype=torch.long).cpu()
        if wanted.ndim > 1 or wanted.numel() not in (1, n):
            raise InputError(f"labels must be one int or (N,) = ({n},); got shape {tuple(wanted.shape)}")
        wanted = wanted.expand(n)
        result["class_match"] = float((model.predict(samples01) == wanted).float().mean())
    if inception_weights is not None:
        result["inception_fid"] = inception_fid(samples01, unit_images(test), inception_weights, device)
    return result
