"""Denoisers: ``forward(sample, timestep, class_labels=None) -> prediction`` of the sample's shape.

Neither holds a noise schedule; the schedule lives in the diffusers scheduler, so
any scheduler can drive any denoiser. Class-conditional denoisers reserve the
index ``num_classes`` for the "no label" class of classifier-free guidance.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

from rlgen.backbones import BackboneConfig, build_backbone
from rlgen.errors import InputError
from rlgen.generative.diffusion.config import DiffusionConfig


def _labels(class_labels: torch.Tensor | None, num_classes: int, batch: int, device: torch.device) -> torch.Tensor:
    """Labels (B,) for a conditional net, the null class where none are given."""
    if class_labels is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    return class_labels.to(device=device, dtype=torch.long)


def _time_mlp(width: int) -> nn.Sequential:
    """The MLP over the sinusoidal timestep embedding (as in DiT / U-ViT)."""
    return nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))


def _conditioning(denoiser: nn.Module, timestep: torch.Tensor | int, class_labels: torch.Tensor | None,
                  batch: int, device: torch.device) -> torch.Tensor:
    """(B, width): the timestep's embedding through ``denoiser.time_embed``, plus the label's (the null
    class where none is given) when ``denoiser.class_embed`` exists."""
    t = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch)
    emb = denoiser.time_embed(get_timestep_embedding(t, denoiser.width, flip_sin_to_cos=True, downscale_freq_shift=0))
    if denoiser.class_embed is not None:
        emb = emb + denoiser.class_embed(_labels(class_labels, denoiser.num_classes, batch, device))
    return emb


class UNetDenoiser(nn.Module):
    """A diffusers ``UNet2DModel`` (kept in ``.unet`` so diffusers' pipelines can load it)."""

    def __init__(self, config: DiffusionConfig, image_shape: tuple[int, int, int], num_classes: int = 0) -> None:
        super().__init__()
        c, h, w = image_shape
        factor = 2 ** (len(config.unet_channels) - 1)
        if h % factor or w % factor:
            raise InputError(
                f"a UNet with {len(config.unet_channels)} levels needs image sides divisible by {factor}; got {h}x{w}. "
                f"Set image_size (e.g. --set image_size=32 pads 28x28 images) or use fewer unet_channels"
            )
        self.num_classes = num_classes
        self.unet = UNet2DModel(
            sample_size=h if h == w else (h, w),
            in_channels=c,
            out_channels=c,
            block_out_channels=tuple(config.unet_channels),
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.unet_attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.unet_attention)),
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            num_class_embeds=num_classes + 1 if num_classes else None,
        )

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, H, W), timesteps (B,) or scalar, labels (B,) -> (B, C, H, W)."""
        if self.num_classes:
            class_labels = _labels(class_labels, self.num_classes, sample.shape[0], sample.device)
        else:
            class_labels = None
        return self.unet(sample, timestep, class_labels=class_labels).sample


class PatchTransformerDenoiser(nn.Module):
    """Image -> patches -> ``rlgen.backbones`` transformer -> patches -> image (as in DiT/U-ViT).

    The timestep (and label) embedding is added to every patch token; the output
    projection starts at zero so the untrained net predicts zero.
    """

    def __init__(self, config: DiffusionConfig, image_shape: tuple[int, int, int], num_classes: int = 0) -> None:
        super().__init__()
        c, h, w = image_shape
        p = config.patch_size
        if h % p or w % p:
            raise InputError(f"patch_size={p} must divide the image sides; got {h}x{w}")
        self.image_shape = (c, h, w)
        self.patch_size = p
        self.num_classes = num_classes
        width = config.transformer.d_model
        self.width = width
        self.patch_embed = nn.Linear(c * p * p, width)
        self.time_embed = _time_mlp(width)
        self.class_embed = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.body = build_backbone(config.transformer, (width,))
        self.norm = nn.LayerNorm(self.body.out_dim)
        self.head = nn.Linear(self.body.out_dim, c * p * p)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, H, W), timesteps (B,) or scalar, labels (B,) -> (B, C, H, W)."""
        b, c, h, w = sample.shape
        p = self.patch_size
        tokens = sample.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
        tokens = tokens.reshape(b, (h // p) * (w // p), c * p * p)  # (B, N, C*p*p)
        emb = _conditioning(self, timestep, class_labels, b, sample.device)  # (B, width)
        x = self.patch_embed(tokens) + emb[:, None, :].to(tokens.dtype)  # (B, N, width)
        x = self.head(self.norm(self.body(x)))  # (B, N, C*p*p)
        x = x.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, C, H/p, p, W/p, p)
        return x.reshape(b, c, h, w)


class LatentMLPDenoiser(nn.Module):
    """Latent diffusion's denoiser: an ``rlgen.backbones`` MLP on [z_t, embedding(t) (+ embedding(label))];
    (B, Z) latents -> the prediction (B, Z), the output layer started at zero."""

    def __init__(self, hidden_sizes: list[int], latent_shape: tuple[int, ...], num_classes: int = 0,
                 width: int = 128) -> None:
        super().__init__()
        if len(latent_shape) != 1:
            raise InputError(f"the mlp denoiser takes latent vectors, got samples of shape {latent_shape}")
        (z,) = latent_shape
        self.num_classes, self.width = num_classes, width
        self.time_embed = _time_mlp(width)
        self.class_embed = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.body = build_backbone(BackboneConfig(kind="mlp", hidden_sizes=list(hidden_sizes), activation="silu"),
                                   (z + width,))
        self.head = nn.Linear(self.body.out_dim, z)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, class_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, Z), timesteps (B,) or scalar, labels (B,) -> (B, Z)."""
        emb = _conditioning(self, timestep, class_labels, sample.shape[0], sample.device)  # (B, width)
        return self.head(self.body(torch.cat([sample, emb.to(sample.dtype)], dim=1)))


def build_denoiser(
    config: DiffusionConfig, image_shape: tuple[int, ...], num_classes: int = 0
) -> nn.Module:
    """The denoiser ``config.denoiser`` names for samples of ``image_shape`` (a latent run: the latent
    shape); ``num_classes > 0`` makes it class-conditional."""
    if config.denoiser == "mlp":
        return LatentMLPDenoiser(config.mlp_hidden_sizes, tuple(image_shape), num_classes)
    if config.denoiser == "unet":
        return UNetDenoiser(config, image_shape, num_classes)
    if config.denoiser == "transformer":
        return PatchTransformerDenoiser(config, image_shape, num_classes)
    raise InputError(f"denoiser={config.denoiser!r} is not allowed; choose 'unet', 'transformer' or 'mlp'")
