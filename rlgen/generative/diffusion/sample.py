"""diffusers schedulers by name, the training target, and the written-out sampling loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from torch import nn

from rlgen.errors import CheckpointError, InputError, UnknownNameError
from rlgen.generative.diffusion.config import SCHEDULERS, DiffusionConfig
from rlgen.generative.diffusion.latent import LatentCodec, codec_from_meta
from rlgen.generative.diffusion.networks import build_denoiser
from rlgen.generative.runs import config_from_run, open_run, run_directory
from rlgen.training import EMA

ALGO = "diffusion"
Scheduler = DDPMScheduler | DDIMScheduler | DPMSolverMultistepScheduler


def training_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    """The forward process q(x_t | x_0) of training, saved beside every checkpoint.

    Pixels live in [-1, 1], so the samplers clip their x_0 estimates there (diffusers' default);
    latents have unit spread and no bounds, so a latent run's schedule does not clip.
    """
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=not config.vae_run,
    )


def make_scheduler(name: str, scheduler_config: Mapping[str, Any]) -> Scheduler:
    """A sampler for the trained noise schedule: ``ddpm``, ``ddim`` or ``dpm-solver++``."""
    if name == "ddpm":
        return DDPMScheduler.from_config(scheduler_config)
    if name == "ddim":
        return DDIMScheduler.from_config(scheduler_config)
    if name == "dpm-solver++":
        return DPMSolverMultistepScheduler.from_config(scheduler_config, algorithm_type="dpmsolver++")
    raise UnknownNameError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


def training_target(
    scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """What the denoiser regresses on: the noise (epsilon) or v = sqrt(a) eps - sqrt(1 - a) x0."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    raise InputError(f"prediction_type={prediction_type!r} is not allowed; choose 'epsilon' or 'v_prediction'")


@torch.no_grad()
def sample(
    denoiser: nn.Module,
    scheduler: Scheduler,
    num_images: int,
    image_shape: tuple[int, int, int],
    num_inference_steps: int,
    generator: torch.Generator,
    device: torch.device,
    class_labels: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    batch_size: int = 256,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run the reverse process: (num_images, C, H, W) samples in [-1, 1].

    ``image_shape`` is the shape the denoiser works in; a latent diffusion run passes its
    latent shape and ``decode`` (the codec's decoder: latents -> images in [-1, 1]).
    With ``class_labels`` (N,) and ``guidance_scale`` w != 1, each step mixes the
    conditional and the null-label prediction: uncond + w * (cond - uncond)
    (Ho & Salimans, 2022). ``generator`` (CPU) fixes the initial and step noise.
    """
    outputs = []
    for start in range(0, num_images, batch_size):
        n = min(batch_size, num_images - start)
        labels = None if class_labels is None else class_labels[start : start + n].to(device)
        guided = labels is not None and guidance_scale != 1.0
        scheduler.set_timesteps(num_inference_steps, device=device)
        x = torch.randn((n, *image_shape), generator=generator).to(device) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)  # (n, C, H, W)
            if guided:
                null = torch.full_like(labels, denoiser.num_classes)
                both = denoiser(torch.cat([model_input, model_input]), t, torch.cat([labels, null]))  # (2n, C, H, W)
                cond, uncond = both.float().chunk(2)
                model_output = uncond + guidance_scale * (cond - uncond)
            else:
                model_output = denoiser(model_input, t, labels).float()
            x = scheduler.step(model_output, t, x, generator=generator).prev_sample
        if decode is not None:
            x = decode(x)  # (n, Z) latents -> (n, C, H, W) images
        outputs.append(x.clamp(-1.0, 1.0))
    return torch.cat(outputs)


class Trained(NamedTuple):
    """A trained diffusion run, ready to sample: ``shape`` is what the denoiser works in (the latent
    shape for latent diffusion, whose ``codec`` decodes samples to images; None in pixel space)."""

    denoiser: nn.Module
    config: DiffusionConfig
    meta: dict[str, Any]
    scheduler_config: dict[str, Any]
    shape: tuple[int, ...]
    codec: LatentCodec | None


def load(run_dir: str | Path, device: torch.device) -> Trained:
    """The EMA denoiser of ``run_dir`` in eval mode, with its config, meta, scheduler config and codec."""
    checkpoint = open_run(run_dir, ALGO)
    config = config_from_run(checkpoint, DiffusionConfig)
    data = checkpoint.meta["data"]
    codec = None
    shape = tuple(data["image_shape"])
    if config.vae_run:
        codec = codec_from_meta(checkpoint.meta["codec"])
        checkpoint.load_module("codec", codec)
        codec, shape = codec.to(device), codec.latent_shape
    denoiser = build_denoiser(config, shape, data["num_classes"] if config.class_conditional else 0)
    ema = EMA(denoiser)
    checkpoint.load_module("ema", ema)  # the averaged weights are the ones to sample from
    denoiser = ema.shadow
    run_dir = run_directory(run_dir)
    config_file = run_dir / DDPMScheduler.config_name
    if config_file.is_file():
        try:
            scheduler_config = dict(DDPMScheduler.load_config(run_dir))
        except (OSError, ValueError) as exc:  # diffusers raises EnvironmentError for unreadable JSON
            raise CheckpointError(
                f"{config_file} is not a readable scheduler config ({str(exc).splitlines()[0][:120]}); delete it "
                "to sample with the scheduler the run's checkpoint describes"
            ) from None
    else:
        scheduler_config = dict(training_scheduler(config).config)
    return Trained(denoiser.to(device).eval(), config, checkpoint.meta, scheduler_config, shape, codec)
