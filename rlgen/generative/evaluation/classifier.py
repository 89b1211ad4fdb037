"""The per-dataset feature network behind rlgen's domain FID / KID.

Inception weights cannot be downloaded everywhere, so rlgen trains a small CNN
classifier on each dataset's train split once, caches it as a safetensors
checkpoint, and uses its penultimate layer as the feature space. Features of a
net trained on the domain itself separate its classes well, which is what FID
needs; the numbers are comparable only between runs that use the same cached
classifier (same dataset and image size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.backbones import BackboneConfig, build_backbone
from rlgen.data import ImageDataset, batches, cache_root, load_dataset, to_model_range
from rlgen.data.registry import resolve_name
from rlgen.errors import CheckpointError, InputError, RlgenError
from rlgen.training.checkpoint import load_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)
ALGO = "domain_classifier"


@dataclass
class ClassifierConfig:
    """Architecture and training of the feature classifier."""

    channels: list[int] = field(default_factory=lambda: [32, 64], metadata={"help": "small_cnn conv channels"})
    features_dim: int = field(default=128, metadata={"help": "Width of the penultimate layer = feature size D"})
    epochs: int = field(default=3, metadata={"help": "Passes over the train split"})
    min_steps: int = field(default=600, metadata={"help": "At least this many updates (small sets like digits)"})
    batch_size: int = field(default=128, metadata={"help": "Images per update"})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "Seed for initialisation and shuffling"})

    def validate(self) -> None:
        """Raise ValueError naming a bad field."""
        for name in ("features_dim", "batch_size", "min_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"classifier {name} must be >= 1; got {getattr(self, name)}")
        if self.epochs < 0 or self.learning_rate <= 0 or not self.channels:
            raise InputError(
                f"classifier needs epochs >= 0, learning_rate > 0 and channels; got {self.epochs}, "
                f"{self.learning_rate}, {self.channels}"
            )


class DomainClassifier(nn.Module):
    """small_cnn backbone + linear head; ``features`` gives the backbone output.

    Input (B, C, H, W) floats in [0, 1]; logits (B, num_classes); features (B, features_dim).
    """

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, config: ClassifierConfig):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.config = config
        backbone_config = BackboneConfig(kind="small_cnn", channels=list(config.channels), features_dim=config.features_dim)
        self.backbone = build_backbone(backbone_config, self.image_shape)
        self.head = nn.Linear(self.backbone.out_dim, num_classes)
        self.test_accuracy: float = float("nan")  # set after training or loading
        self.trained_steps = 0

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images01 * 2.0 - 1.0))  # (B, num_classes)

    @torch.no_grad()
    def features(self, images01: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Penultimate-layer features of (N, C, H, W) images in [0, 1] -> (N, D) float32 on CPU."""
        self._check(images01)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = [self.backbone(chunk.to(device).float() * 2.0 - 1.0).cpu() for chunk in images01.split(batch_size)]
        self.train(was_training)
        return torch.cat(out)

    @torch.no_grad()
    def predict(self, images01: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Predicted class (N,) int64 on CPU of (N, C, H, W) images in [0, 1]."""
        self._check(images01)
        device = next(self.parameters()).device
        return torch.cat([self(chunk.to(device).float()).argmax(1).cpu() for chunk in images01.split(batch_size)])

    def _check(self, images01: torch.Tensor) -> None:
        if tuple(images01.shape[1:]) != self.image_shape:
            raise InputError(
                f"the classifier was trained on images of shape {self.image_shape}; got {tuple(images01.shape[1:])}"
            )


def dataset_key(name_or_path: str) -> str:
    """A cache-file-safe name: the registry name, or ``<folder>-<hash of its path>`` for folders."""
    spec = resolve_name(name_or_path)
    if spec is not None:
        return spec.name
    path = Path(name_or_path).expanduser().resolve()
    return f"{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def classifier_cache_path(name_or_path: str, image_size: int, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/classifiers/<dataset>-<size>.safetensors`` (cache = ``$RLGEN_CACHE`` or ``~/.cache/rlgen``)."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "classifiers" / f"{dataset_key(name_or_path)}-{image_size}.safetensors"


def unit_images(dataset: ImageDataset) -> torch.Tensor:
    """A dataset's images as floats in [0, 1], (N, C, H, W)."""
    return to_model_range(dataset.images, "unit")


def accuracy(model: DomainClassifier, dataset: ImageDataset) -> float:
    """Share of ``dataset`` the classifier labels correctly."""
    return float((model.predict(unit_images(dataset)) == dataset.labels).float().mean())


def train_classifier(
    train: ImageDataset, config: ClassifierConfig | None = None, device: torch.device | str = "cpu"
) -> DomainClassifier:
    """Train a DomainClassifier on a labeled split (cross-entropy, Adam).

    Runs under ``torch.random.fork_rng`` so evaluating a model does not move the
    global RNG of the training run that called it, and with gradients on even when
    called from an evaluation under ``torch.no_grad`` (the first evaluation on a
    machine trains the classifier there).
    """
    config = config or ClassifierConfig()
    config.validate()
    if train.num_classes < 2:
        raise RlgenError(
            f"dataset '{train.name}' has no class labels; the domain FID classifier needs a labeled "
            "dataset (an image folder with one subfolder per class)"
        )
    device = torch.device(device)
    steps = max(config.epochs * (len(train) // config.batch_size), config.min_steps)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.enable_grad():
        torch.manual_seed(config.seed)
        model = DomainClassifier(train.shape, train.num_classes, config).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        generator = torch.Generator().manual_seed(config.seed)
        data = batches(train, min(config.batch_size, len(train)), generator, device)
        model.train()
        for _ in range(steps):
            images, labels = next(data)
            loss = F.cross_entropy(model(to_model_range(images, "unit")), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    model.trained_steps = steps
    logger.info("trained the %s feature classifier for %d steps (last loss %.3f)", train.name, steps, loss.item())
    return model


def _load_cached(path: Path, device: torch.device) -> DomainClassifier | None:
    """The cached classifier, or None if it is absent or unreadable (it is then retrained)."""
    if not path.is_file():
        return None
    try:
        ckpt = load_checkpoint(path)
        meta = ckpt.meta
        if meta.get("algo") != ALGO:
            return None
        model = DomainClassifier(tuple(meta["image_shape"]), meta["num_classes"], ClassifierConfig(**meta["config"]))
        ckpt.load_module("classifier", model)
    except (CheckpointError, KeyError, TypeError, ValueError) as e:
        logger.warning("ignoring the cached classifier %s (%s); training a new one", path, e)
        return None
    model.test_accuracy = float(meta.get("test_accuracy", float("nan")))
    model.trained_steps = int(meta["step"])
    return model.to(device).eval()


def load_or_train_classifier(
    dataset_name: str,
    image_size: int | None = None,
    data_dir: str | None = None,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    config: ClassifierConfig | None = None,
    retrain: bool = False,
) -> DomainClassifier:
    """The cached feature classifier for a dataset and image size, training and caching it if needed.

    Args:
        dataset_name: a dataset name or an image folder (as for ``load_dataset``).
        image_size: the side of the images it will see; None = the dataset's own size.
        data_dir: passed to ``load_dataset``.
        cache_dir: overrides ``$RLGEN_CACHE`` / ``~/.cache/rlgen``.
        device: where to train and run it.
        config: a non-default architecture or training; a cached classifier built
            with another config is retrained.
        retrain: ignore the cache.

    Returns:
        The classifier in eval mode, with ``test_accuracy`` on the test split.
    """
    device = torch.device(device)
    if image_size is None:
        image_size = load_dataset(dataset_name, "test", data_dir=data_dir).shape[1]
    path = classifier_cache_path(dataset_name, image_size, cache_dir)
    model = None if retrain else _load_cached(path, device)
    if model is not None and (config is None or config == model.config):
        return model
    config = config or ClassifierConfig()
    train = load_dataset(dataset_name, "train", data_dir=data_dir, image_size=image_size)
    test = load_dataset(dataset_name, "test", data_dir=data_dir, image_size=image_size)
    model = train_classifier(train, config, device)
    model.test_accuracy = accuracy(model, test)
    logger.info("%s classifier test accuracy %.4f; cached at %s", train.name, model.test_accuracy, path)
    save_checkpoint(
        path,
        modules={"classifier": model},
        meta={
            "config": dataclasses.asdict(config),
            "step": model.trained_steps,
            "algo": ALGO,
            "dataset": train.name,
            "image_shape": list(train.shape),
            "num_classes": train.num_classes,
            "class_names": train.class_names,
            "test_accuracy": model.test_accuracy,
        },
    )
    return model
