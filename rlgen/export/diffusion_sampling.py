"""Sampling from an exported denoiser: the scheduler loop in Python, the network in onnxruntime.

This is the loop docs/export.md shows; it needs numpy, onnxruntime, torch only for
diffusers' scheduler arithmetic, and no rlgen model code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def sample_onnx_denoiser(path: str | Path, num_images: int, steps: int = 25, scheduler: str = "ddim",
                         class_label: int | None = None, seed: int = 0) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] from ``denoiser.onnx`` with a diffusers scheduler."""
    import onnxruntime as ort
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    kinds = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm-solver++": DPMSolverMultistepScheduler}
    sampler = kinds[scheduler].from_config(meta["scheduler_config"])
    sampler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((num_images, *meta["image_shape"]), generator=generator) * sampler.init_noise_sigma
    labels = {}
    if meta["num_classes"]:
        label = class_label if class_label is not None else 0
        labels = {"class_labels": np.full(num_images, label, dtype=np.int64)}
    for t in sampler.timesteps:
        model_input = sampler.scale_model_input(x, t)
        timestep = np.full(num_images, int(t), dtype=np.int64)
        (output,) = session.run(None, {"sample": model_input.numpy(), "timestep": timestep, **labels})
        x = sampler.step(torch.from_numpy(output), t, x, generator=generator).prev_sample
    return ((x.clamp(-1.0, 1.0) + 1.0) / 2.0).numpy()
