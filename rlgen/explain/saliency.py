"""Where an image Q-network looks: gradient saliency and Grad-CAM for the chosen action, as overlays.

- Gradient saliency (Simonyan et al. 2014): |dQ(s, a) / ds|, the largest over
  channels, per pixel.
- Grad-CAM (Selvaraju et al. 2017): the last convolution's feature maps,
  weighted by the spatial mean of dQ(s, a) / d(feature map), through a ReLU.

Both are normalised to [0, 1] per frame and upsampled onto the rendered frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.errors import InputError


def _as_input(obs: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Observations as the float the network computes on (uint8 pixels scaled as the CNN would)."""
    obs = torch.as_tensor(obs)
    return obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """(T, H, W) -> each frame scaled to [0, 1] (an all-zero frame stays zero)."""
    peak = maps.flatten(1).max(dim=1).values.clamp(min=1e-12)
    return maps / peak.view(-1, 1, 1)


def gradient_saliency(q_net: nn.Module, obs: np.ndarray | torch.Tensor, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) observations and (T,) actions -> (T, H, W) saliency in [0, 1]."""
    x = _as_input(obs).requires_grad_(True)
    if x.dim() != 4:
        raise InputError(f"saliency needs image observations (C, H, W); these have shape {tuple(x.shape[1:])}")
    q = q_net(x)  # (T, A)
    chosen = q.gather(1, torch.as_tensor(actions, dtype=torch.long).view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(chosen, x)
    return _normalise(grad.abs().amax(dim=1)).detach()  # (T, H, W)


def last_conv(q_net: nn.Module) -> nn.Conv2d:
    convs = [m for m in q_net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise InputError("Grad-CAM needs a convolutional Q-network (small_cnn, nature_cnn, impala_cnn)")
    return convs[-1]


def grad_cam(q_net: nn.Module, obs: np.ndarray | torch.Tensor, actions: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) observations and (T,) actions -> (T, H, W) Grad-CAM at the input's size, in [0, 1]."""
    x = _as_input(obs)
    if x.dim() != 4:
        raise InputError(f"Grad-CAM needs image observations (C, H, W); these have shape {tuple(x.shape[1:])}")
    captured: list[torch.Tensor] = []
    hook = last_conv(q_net).register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        q = q_net(x)  # (T, A)
    finally:
        hook.remove()
    features = captured[0]  # (T, K, h, w)
    chosen = q.gather(1, torch.as_tensor(actions, dtype=torch.long).view(-1, 1)).sum()
    (grads,) = torch.autograd.grad(chosen, features)
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (T, K, 1, 1)
    cam = F.relu((weights * features).sum(dim=1, keepdim=True))  # (T, 1, h, w)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return _normalise(cam).detach()


def heat_colours(maps: np.ndarray) -> np.ndarray:
    """(..., ) values in [0, 1] -> (..., 3) uint8, black-red-yellow-white (a 'hot' colour map)."""
    v = np.clip(maps, 0.0, 1.0)[..., None]
    rgb = np.concatenate([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)
    return (rgb * 255).astype(np.uint8)


def overlay(frames: np.ndarray, maps: torch.Tensor | np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend (T, H', W') maps in [0, 1], resized to the frames, over (T, H, W, 3) uint8 frames."""
    maps = torch.as_tensor(maps, dtype=torch.float32)[:, None]  # (T, 1, H', W')
    resized = F.interpolate(maps, size=frames.shape[1:3], mode="bilinear", align_corners=False)[:, 0].numpy()
    heat = heat_colours(resized).astype(np.float32)
    weight = alpha * resized[..., None]  # opaque where the map is strong, the frame shows through elsewhere
    return (frames.astype(np.float32) * (1 - weight) + heat * weight).astype(np.uint8)
