"""Hyperparameters of diffusion training and sampling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rlgen.backbones import BackboneConfig
from rlgen.config import check_run_fields
from rlgen.errors import InputError
from rlgen.training.transfer import TransferConfig

SCHEDULERS = ("ddpm", "ddim", "dpm-solver++")


def _default_transformer() -> BackboneConfig:
    return BackboneConfig(
        kind="transformer", hidden_sizes=[], d_model=128, n_heads=4, n_layers=4, causal=False, pool="none", max_len=1024
    )


@dataclass
class DiffusionConfig:
    """Everything a diffusion run needs; filled from ``agents/diffusion.yml`` and ``--set``."""

    data: str = field(
        default="digits", metadata={"help": "Dataset name (digits, fashion-mnist, mnist, cifar10) or image folder."}
    )
    image_size: int = field(default=0, metadata={"help": "Resize images to this side (0 = the dataset's own size)."})
    seed: int = field(default=0, metadata={"help": "Random seed of weights, batches, noise and sampling."})
    steps: int = field(default=10000, metadata={"help": "Gradient steps to train for."})
    batch_size: int = field(default=128, metadata={"help": "Images per gradient step."})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta2: float = field(default=0.999, metadata={"help": "Adam beta2."})
    warmup_steps: int = field(default=500, metadata={"help": "Linear learning-rate warmup steps."})
    lr_schedule: Literal["constant", "cosine", "linear"] = field(
        default="cosine", metadata={"help": "Learning-rate schedule after warmup."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the gradient norm to this (0 = no clipping)."})
    denoiser: Literal["unet", "transformer", "mlp"] = field(
        default="unet",
        metadata={"help": "diffusers UNet2DModel, a patch transformer from rlgen.backbones, or (latent diffusion) "
                          "an MLP over latent vectors."},
    )
    vae_run: str = field(
        default="", metadata={"help": "Latent diffusion: a trained rlgen VAE run to diffuse in the latent space of "
                                      "(its weights are copied into this run); empty = pixel space."}
    )
    mlp_hidden_sizes: list[int] = field(
        default_factory=lambda: [512, 512, 512], metadata={"help": "Widths of the mlp denoiser (latent diffusion)."}
    )
    unet_channels: list[int] = field(
        default_factory=lambda: [32, 64], metadata={"help": "UNet block widths, one per resolution level."}
    )
    unet_attention: list[bool] = field(
        default_factory=lambda: [False, True], metadata={"help": "Self-attention in each UNet level (same length)."}
    )
    layers_per_block: int = field(default=2, metadata={"help": "ResNet layers per UNet block."})
    norm_num_groups: int = field(default=8, metadata={"help": "GroupNorm groups in the UNet (divides every width)."})
    transformer: BackboneConfig = field(
        default_factory=_default_transformer, metadata={"help": "Transformer backbone of the patch denoiser."}
    )
    patch_size: int = field(default=2, metadata={"help": "Patch side of the transformer denoiser."})
    num_train_timesteps: int = field(default=1000, metadata={"help": "Diffusion steps T of the training scheduler."})
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = field(
        default="squaredcos_cap_v2", metadata={"help": "Noise schedule of diffusers' DDPMScheduler."}
    )
    prediction_type: Literal["epsilon", "v_prediction"] = field(
        default="epsilon", metadata={"help": "What the denoiser predicts: the noise, or v (Salimans & Ho, 2022)."}
    )
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the weights used for sampling."})
    class_conditional: bool = field(default=False, metadata={"help": "Condition on labels (classifier-free guidance)."})
    label_dropout: float = field(
        default=0.1, metadata={"help": "Share of labels replaced by the null class in training (for guidance)."}
    )
    guidance_scale: float = field(default=2.0, metadata={"help": "Default classifier-free guidance weight w."})
    sample_scheduler: Literal["ddpm", "ddim", "dpm-solver++"] = field(
        default="ddpm",
        metadata={
            "help": "Default sampler (grids, eval, rlgen sample). DDPM's noise forgives an undertrained net; "
            "dpm-solver++ needs fewer steps once the net is good."
        },
    )
    sample_steps: int = field(default=50, metadata={"help": "Default inference steps of that sampler."})
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={"help": "Autocast precision on CUDA."})
    channels_last: bool = field(
        default=False, metadata={"help": "NHWC memory layout (faster convs in bf16/fp16 on GPUs)."}
    )
    compile: bool = field(default=False, metadata={"help": "torch.compile the denoiser."})
    transfer: TransferConfig = field(
        default_factory=TransferConfig,
        metadata={"help": "Start part of a model (e.g. vae.encoder) from another run's checkpoint (rlgen.training.transfer)."},
    )
    log_interval: int = field(default=100, metadata={"help": "Steps between scalar logs."})
    sample_interval: int = field(default=2000, metadata={"help": "Steps between sample grids (0 = never)."})
    checkpoint_interval: int = field(default=2000, metadata={"help": "Steps between checkpoints (0 = final only)."})
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
        for name in ("steps", "batch_size", "layers_per_block", "num_train_timesteps", "sample_steps", "patch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1")
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate={self.learning_rate} must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"ema_decay={self.ema_decay} must be in [0, 1)")
        if not 0.0 <= self.label_dropout < 1.0:
            raise InputError(f"label_dropout={self.label_dropout} must be in [0, 1)")
        # (denoiser=mlp without a vae_run is refused when training starts: a preset names the
        # denoiser, the command line the VAE run, and the preset is built first.)
        if self.vae_run and self.denoiser != "mlp":
            raise InputError(f"denoiser={self.denoiser!r} with vae_run={self.vae_run!r}: latent diffusion uses "
                             "denoiser=mlp over the VAE's latent vectors; set denoiser=mlp")
        if self.vae_run and self.channels_last:
            raise InputError("channels_last=true has no meaning for latent vectors; set channels_last=false")
        if any(not isinstance(s, int) or s < 1 for s in self.mlp_hidden_sizes) or not self.mlp_hidden_sizes:
            raise InputError(f"mlp_hidden_sizes={self.mlp_hidden_sizes!r} must be a non-empty list of positive ints")
        if len(self.unet_attention) != len(self.unet_channels):
            raise InputError(
                f"unet_attention={self.unet_attention} needs one entry per unet_channels level {self.unet_channels}"
            )
        bad = [c for c in self.unet_channels if c % self.norm_num_groups]
        if bad:
            raise InputError(f"unet_channels {bad} are not divisible by norm_num_groups={self.norm_num_groups}")
