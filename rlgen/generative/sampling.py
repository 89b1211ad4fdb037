"""Images from a trained run of any generative model: sample grids and latent interpolations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from rlgen.errors import InputError, UnknownNameError
from rlgen.generative.runs import MODELS


@dataclass
class Samples:
    """Generated images (N, C, H, W) in [0, 1], the grid width to show them at, the run's dataset, the labels."""

    images: torch.Tensor
    nrow: int
    dataset: str
    labels: torch.Tensor | None = None


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latents (B, Z) at fractions t (T,) -> (B, T, Z).

    Gaussian latents live near a sphere of radius sqrt(Z); a straight line between
    two of them passes through the low-density middle, the great circle does not
    (White, 2016). Falls back to a straight line where the two are parallel.
    """
    z0n, z1n = z0 / z0.norm(dim=-1, keepdim=True), z1 / z1.norm(dim=-1, keepdim=True)
    omega = torch.acos((z0n * z1n).sum(-1).clamp(-1.0, 1.0))[:, None, None]  # (B, 1, 1)
    t = t[None, :, None]  # (1, T, 1)
    so = torch.sin(omega)
    linear = (1.0 - t) * z0[:, None] + t * z1[:, None]
    spherical = (torch.sin((1.0 - t) * omega) * z0[:, None] + torch.sin(t * omega) * z1[:, None]) / so.clamp(min=1e-6)
    return torch.where(so > 1e-6, spherical, linear)


def interpolation_latents(rows: int, cols: int, latent_dim: int, generator: torch.Generator) -> torch.Tensor:
    """``rows`` interpolations of ``cols`` steps between random N(0, I) endpoints: (rows * cols, Z)."""
    ends = torch.randn(2, rows, latent_dim, generator=generator)
    path = slerp(ends[0], ends[1], torch.linspace(0.0, 1.0, cols))  # (rows, cols, Z)
    return path.reshape(rows * cols, latent_dim)


def _latents(
    num_images: int, latent_dim: int, generator: torch.Generator, interpolate: bool
) -> tuple[torch.Tensor, int]:
    nrow = 8 if num_images >= 8 else num_images
    if interpolate:
        return interpolation_latents(math.ceil(num_images / nrow), nrow, latent_dim, generator), nrow
    return torch.randn(num_images, latent_dim, generator=generator), max(1, round(math.sqrt(num_images)))


def generate(
    model: str,
    run_dir: str | Path,
    *,
    num_images: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    scheduler: str | None = None,
    steps: int | None = None,
    class_label: int | None = None,
    guidance: float | None = None,
    interpolate: bool = False,
) -> Samples:
    """Sample ``num_images`` from the ``model`` ("vae", "gan" or "diffusion") trained in ``run_dir``.

    Args:
        scheduler, steps: diffusion only; default to the run's ``sample_scheduler`` / ``sample_steps``.
        class_label, guidance: class-conditional diffusion only; the class to draw and the
            classifier-free guidance weight (default: the run's ``guidance_scale``).
        interpolate: vae and gan only; rows of latent interpolations instead of independent samples.

    Raises:
        ValueError / UnknownNameError: an option the model does not have, or a bad value.
    """
    if model not in MODELS:
        raise UnknownNameError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if num_images < 1:
        raise InputError(f"-n {num_images}: the number of images must be at least 1")
    if guidance is not None and not math.isfinite(guidance):
        raise InputError(f"--guidance {guidance} must be a finite number (1 = no guidance; 2-5 are typical)")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    if model != "diffusion":
        diffusion_only = {"--scheduler": scheduler, "--steps": steps, "--class": class_label, "--guidance": guidance}
        for name, value in diffusion_only.items():
            if value is not None:
                raise InputError(f"{name} applies to diffusion models only, not {model}")
    if model == "vae":
        from rlgen.generative.vae.sample import decode_images, load

        vae, config, _ = load(run_dir, device)
        latents, nrow = _latents(num_images, config.latent_dim, generator, interpolate)
        return Samples(decode_images(vae, latents.to(device), config.likelihood), nrow, config.data)
    if model == "gan":
        from rlgen.generative.wgan_gp.sample import generate_images, load

        gen, config, _ = load(run_dir, device)
        latents, nrow = _latents(num_images, config.latent_dim, generator, interpolate)
        return Samples(generate_images(gen, latents.to(device)), nrow, config.data)

    from rlgen.generative.diffusion.sample import load, make_scheduler, sample

    if interpolate:
        raise InputError("--interpolate applies to vae and gan; a diffusion model has no latent to walk")
    denoiser, config, meta, scheduler_config, shape, codec = load(run_dir, device)
    num_classes = meta["data"]["num_classes"] if config.class_conditional else 0
    labels = None
    if class_label is not None:
        if not num_classes:
            raise InputError(
                f"--class needs a class-conditional run; {run_dir} is unconditional "
                "(train one with --set class_conditional=true)"
            )
        if not 0 <= class_label < num_classes:
            names = ", ".join(f"{i}={n}" for i, n in enumerate(meta["data"]["class_names"]))
            raise InputError(f"--class {class_label} is out of range; this run's classes are {names}")
        labels = torch.full((num_images,), class_label, dtype=torch.long)
    elif guidance is not None and not num_classes:
        raise InputError(f"--guidance needs a class-conditional run; {run_dir} is unconditional")
    elif num_classes:
        labels = torch.arange(num_images) % num_classes  # one class per grid column
    steps = steps if steps is not None else config.sample_steps
    if not 1 <= steps <= config.num_train_timesteps:
        raise InputError(f"--steps {steps} must be between 1 and the run's {config.num_train_timesteps} training steps")
    sampler = make_scheduler(scheduler or config.sample_scheduler, scheduler_config)
    images = sample(
        denoiser,
        sampler,
        num_images,
        shape,
        steps,
        generator,
        device,
        class_labels=labels,
        guidance_scale=config.guidance_scale if guidance is None else guidance,
        decode=codec.decode if codec is not None else None,
    )
    nrow = num_classes if labels is not None and class_label is None else max(1, round(math.sqrt(num_images)))
    return Samples((images + 1.0) / 2.0, nrow, config.data, labels)
