"""Hyperparameters of the VAE (Kingma & Welling, 2014; beta-VAE, Higgins et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rlgen.backbones import BackboneConfig
from rlgen.config import check_run_fields
from rlgen.errors import InputError
from rlgen.training.transfer import TransferConfig


def _default_encoder() -> BackboneConfig:
    return BackboneConfig(kind="small_cnn", channels=[32, 64], features_dim=256)


@dataclass
class VAEConfig:
    """Everything a VAE run needs; filled from ``agents/vae.yml`` and ``--set``."""

    data: str = field(
        default="digits", metadata={"help": "Dataset name (digits, fashion-mnist, mnist, cifar10) or image folder."}
    )
    image_size: int = field(default=0, metadata={"help": "Resize images to this side (0 = the dataset's own size)."})
    seed: int = field(default=0, metadata={"help": "Random seed of weights, batches and sampling."})
    steps: int = field(default=5000, metadata={"help": "Gradient steps to train for."})
    batch_size: int = field(default=128, metadata={"help": "Images per gradient step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Adam learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Clip the gradient norm to this (0 = no clipping)."})
    latent_dim: int = field(default=16, metadata={"help": "Size of the Gaussian latent z."})
    beta: float = field(default=1.0, metadata={"help": "Weight of the KL term (1 = the ELBO; beta-VAE otherwise)."})
    likelihood: Literal["bernoulli", "gaussian"] = field(
        default="bernoulli",
        metadata={"help": "p(x|z): Bernoulli on [0,1] pixels, or Gaussian with one learned scale."},
    )
    binarize: bool = field(
        default=False,
        metadata={"help": "Binarize each batch by sampling pixels (makes the Bernoulli NLL a proper likelihood)."},
    )
    encoder: BackboneConfig = field(
        default_factory=_default_encoder, metadata={"help": "Encoder backbone (rlgen.backbones): small_cnn or mlp."}
    )
    decoder: Literal["conv", "mlp"] = field(
        default="conv", metadata={"help": "Decoder: DCGAN-style conv stack or MLP."}
    )
    decoder_channels: list[int] = field(
        default_factory=lambda: [64, 32],
        metadata={"help": "Conv decoder channels from the lowest resolution up; each step doubles the side."},
    )
    decoder_hidden_sizes: list[int] = field(
        default_factory=lambda: [256, 512], metadata={"help": "MLP decoder widths."}
    )
    nll_samples: int = field(default=100, metadata={"help": "Importance samples per image for the NLL estimate."})
    eval_images: int = field(default=1000, metadata={"help": "Test images used for eval/ metrics."})
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={"help": "Autocast precision on CUDA."})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model."})
    transfer: TransferConfig = field(
        default_factory=TransferConfig,
        metadata={"help": "Start part of a model (e.g. vae.encoder) from another run's checkpoint (rlgen.training.transfer)."},
    )
    log_interval: int = field(default=100, metadata={"help": "Steps between scalar logs."})
    sample_interval: int = field(
        default=1000, metadata={"help": "Steps between sample grids in TensorBoard (0 = never)."}
    )
    checkpoint_interval: int = field(default=1000, metadata={"help": "Steps between checkpoints (0 = final only)."})
    keep_checkpoints: int = field(default=3, metadata={"help": "Checkpoints kept in the run's checkpoints/ folder."})
    eval_interval: int = field(default=0, metadata={"help": "Steps between eval/ metrics (0 = at the end only)."})
    eval_samples: int = field(
        default=1000, metadata={"help": "Generated images scored by the domain FID / KID (0 = skip them)."}
    )

    def __post_init__(self) -> None:  # every value is checked before any step
        self.validate()

    def validate(self) -> None:
        check_run_fields(self)
        if self.eval_samples == 1 or self.eval_samples < 0:
            raise InputError(f"eval_samples={self.eval_samples} must be 0 (no FID / KID) or at least 2")
        for name in ("steps", "batch_size", "latent_dim", "nll_samples", "eval_images", "log_interval"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1")
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate={self.learning_rate} must be positive")
        if self.beta < 0:
            raise InputError(f"beta={self.beta} must be >= 0")
        if not self.decoder_channels or min(self.decoder_channels) < 1:
            raise InputError(f"decoder_channels={self.decoder_channels} must be a non-empty list of positive ints")
