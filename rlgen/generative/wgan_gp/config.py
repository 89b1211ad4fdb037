"""Hyperparameters of WGAN-GP; defaults are the paper's Algorithm 1 (Gulrajani et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rlgen.config import check_run_fields
from rlgen.errors import InputError
from rlgen.training.transfer import TransferConfig


@dataclass
class WGANGPConfig:
    """Everything a WGAN-GP run needs; filled from ``agents/gan.yml`` and ``--set``."""

    data: str = field(
        default="digits", metadata={"help": "Dataset name (digits, fashion-mnist, mnist, cifar10) or image folder."}
    )
    image_size: int = field(default=0, metadata={"help": "Resize images to this side (0 = the dataset's own size)."})
    seed: int = field(default=0, metadata={"help": "Random seed of weights, batches and sampling."})
    steps: int = field(default=10000, metadata={"help": "Generator iterations (each after n_critic critic steps)."})
    batch_size: int = field(
        default=64, metadata={"help": "Images per critic and generator step (Algorithm 1: m = 64)."}
    )
    latent_dim: int = field(default=128, metadata={"help": "Size of the generator's N(0, I) input z."})
    learning_rate: float = field(
        default=1e-4, metadata={"help": "Adam learning rate of both nets (Algorithm 1: alpha)."}
    )
    adam_beta1: float = field(default=0.0, metadata={"help": "Adam beta1 (Algorithm 1: 0)."})
    adam_beta2: float = field(default=0.9, metadata={"help": "Adam beta2 (Algorithm 1: 0.9)."})
    n_critic: int = field(default=5, metadata={"help": "Critic steps per generator step (Algorithm 1: 5)."})
    gp_lambda: float = field(default=10.0, metadata={"help": "Gradient penalty weight lambda (Algorithm 1: 10)."})
    architecture: Literal["dcgan", "mlp"] = field(
        default="dcgan",
        metadata={
            "help": "Both nets: dcgan (conv generator and critic) or mlp (about 20x fewer FLOPs: CPU-sized runs)."
        },
    )
    generator_channels: list[int] = field(
        default_factory=lambda: [256, 128, 64],
        metadata={"help": "Generator conv widths from the lowest resolution up; each level doubles the side."},
    )
    critic_channels: list[int] = field(
        default_factory=lambda: [64, 128, 256],
        metadata={"help": "Critic conv widths from full resolution down; each level halves the side."},
    )
    generator_hidden_sizes: list[int] = field(
        default_factory=lambda: [256, 512, 1024], metadata={"help": "MLP generator widths (architecture=mlp)."}
    )
    critic_hidden_sizes: list[int] = field(
        default_factory=lambda: [512, 256], metadata={"help": "MLP critic widths (architecture=mlp)."}
    )
    critic_norm: Literal["none", "layer"] = field(
        default="none",
        metadata={
            "help": "Critic normalisation: none (Algorithm 1) or layer; never batch norm, which breaks the penalty."
        },
    )
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={"help": "Autocast precision on CUDA."})
    compile: bool = field(default=False, metadata={"help": "torch.compile both nets."})
    transfer: TransferConfig = field(
        default_factory=TransferConfig,
        metadata={"help": "Start part of a model (e.g. vae.encoder) from another run's checkpoint (rlgen.training.transfer)."},
    )
    log_interval: int = field(default=100, metadata={"help": "Generator steps between scalar logs."})
    sample_interval: int = field(default=1000, metadata={"help": "Generator steps between sample grids (0 = never)."})
    checkpoint_interval: int = field(
        default=1000, metadata={"help": "Generator steps between checkpoints (0 = final only)."}
    )
    keep_checkpoints: int = field(default=3, metadata={"help": "Checkpoints kept in the run's checkpoints/ folder."})
    eval_interval: int = field(
        default=0, metadata={"help": "Generator steps between eval/ metrics (0 = at the end only)."}
    )
    eval_samples: int = field(
        default=1000, metadata={"help": "Generated images scored by the domain FID / KID (0 = skip them)."}
    )

    def __post_init__(self) -> None:  # every value is checked before any step
        self.validate()

    def validate(self) -> None:
        check_run_fields(self)
        if self.eval_samples == 1 or self.eval_samples < 0:
            raise InputError(f"eval_samples={self.eval_samples} must be 0 (no FID / KID) or at least 2")
        for name in ("steps", "batch_size", "latent_dim", "n_critic", "log_interval"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1")
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate={self.learning_rate} must be positive")
        if self.gp_lambda < 0:
            raise InputError(f"gp_lambda={self.gp_lambda} must be >= 0")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"{name}={getattr(self, name)} must be in [0, 1)")
        for name in ("generator_channels", "critic_channels", "generator_hidden_sizes", "critic_hidden_sizes"):
            if not getattr(self, name) or min(getattr(self, name)) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be a non-empty list of positive ints")
