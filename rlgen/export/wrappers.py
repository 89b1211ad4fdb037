"""Small modules that fix what an exported graph takes and gives (SB3's export guide: wrap, then export).

Each wrapper holds a trained network and exposes exactly the inputs a deployed
model is called with and the outputs it must return, with preprocessing inside
the graph (uint8 pixels are scaled by the backbone, bool grids cast), so the
ONNX file needs nothing from rlgen to run.
"""

from __future__ import annotations

import torch
from torch import nn

from rlgen.backbones.rnn import _mask_state
from rlgen.dqn.recurrent_networks import RecurrentQNetwork, WindowQNetwork
from rlgen.generative.vae.losses import image_mean


class QPolicy(nn.Module):
    """obs (B, *obs_shape) in the env's dtype -> (q (B, A) float32, action (B,) int64)."""

    def __init__(self, q_net: nn.Module):
        super().__init__()
        self.q_net = q_net

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.q_net(obs).float()
        return q, q.argmax(dim=1)


def _recurrent_step(q_net: RecurrentQNetwork, obs: torch.Tensor, episode_start: torch.Tensor, state):
    """``q_net.act`` without its data-dependent branch (which the exporter cannot trace): the state of
    starting copies is zeroed by a multiply, then one step runs. Same numbers as ``act``."""
    keep = (~episode_start).view(1, -1, 1)
    q, state = q_net(obs.unsqueeze(1), _mask_state(state, keep))  # (B, 1, A)
    return q[:, 0], state


class LSTMQPolicy(nn.Module):
    """One step of an LSTM Q-network with its state as explicit inputs and outputs.

    (obs (B, *obs), episode_start (B,) bool, h (L, B, H), c (L, B, H)) -> (q (B, A), action (B,), h', c').
    ``episode_start`` clears a copy's state first.
    """

    def __init__(self, q_net: RecurrentQNetwork):
        super().__init__()
        self.q_net = q_net

    def forward(self, obs: torch.Tensor, episode_start: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        q, (h, c) = _recurrent_step(self.q_net, obs, episode_start, (h, c))
        return q.float(), q.argmax(dim=1), h, c


class GRUQPolicy(nn.Module):
    """One step of a GRU Q-network: (obs, episode_start, h (L, B, H)) -> (q, action, h')."""

    def __init__(self, q_net: RecurrentQNetwork):
        super().__init__()
        self.q_net = q_net

    def forward(self, obs: torch.Tensor, episode_start: torch.Tensor, h: torch.Tensor):
        q, h = _recurrent_step(self.q_net, obs, episode_start, h)
        return q.float(), q.argmax(dim=1), h


class WindowQPolicy(nn.Module):
    """One step of a window Q-network (transformer or TCN) with its window as explicit inputs and outputs.

    (obs (B, *obs), episode_start (B,) bool, window (B, K, *obs), padding (B, K) bool) ->
    (q (B, A), action (B,), window', padding').
    """

    def __init__(self, q_net: WindowQNetwork):
        super().__init__()
        self.q_net = q_net

    def forward(self, obs: torch.Tensor, episode_start: torch.Tensor, window: torch.Tensor, padding: torch.Tensor):
        q, (window, padding) = self.q_net.act(obs, (window, padding), episode_start)
        return q.float(), q.argmax(dim=1), window, padding


class GeneratorImages(nn.Module):
    """WGAN-GP generator: z (B, Z) -> images (B, C, H, W) in [0, 1]."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.generator(z).float() + 1.0) / 2.0).clamp(0.0, 1.0)


class VAEEncoder(nn.Module):
    """images (B, C, H, W) in [0, 1] -> (mu (B, Z), logvar (B, Z))."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(images)


class VAEDecoder(nn.Module):
    """z (B, Z) -> mean images (B, C, H, W) in [0, 1]."""

    def __init__(self, vae: nn.Module, likelihood: str):
        super().__init__()
        self.vae = vae
        self.likelihood = likelihood

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return image_mean(self.vae.decode(z).float(), self.likelihood)


class DenoiserStep(nn.Module):
    """The diffusion denoiser: (sample (B, C, H, W), timestep (B,) int64) -> model output (B, C, H, W).

    The scheduler loop stays in Python (a diffusers scheduler's ``step``), see docs/export.md.
    """

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return self.denoiser(sample, timestep).float()


class ConditionalDenoiserStep(DenoiserStep):
    """A class-conditional denoiser: (sample, timestep, class_labels (B,) int64; num_classes = no class) -> output."""

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        return self.denoiser(sample, timestep, class_labels).float()
