"""Record greedy episodes as frames, and write them as MP4 or GIF."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from rlgen.envs import get_spec, make_env
from rlgen.errors import InputError


class Episode(NamedTuple):
    """One recorded greedy episode."""

    frames: np.ndarray  # (T + 1, H, W, 3) uint8 rendered frames, the first after reset
    observations: np.ndarray  # (T, *obs_shape) what the agent saw before each action
    actions: np.ndarray  # (T,) int64
    total: float  # undiscounted return


def play_recorded(
    q_net: torch.nn.Module,
    env_id: str,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_steps: int = 10_000,
) -> Episode:
    """Play one greedy episode with rgb_array rendering, keeping frames, observations and actions.

    Memory agents act with their memory, through the same actor as in training.
    """
    from rlgen.dqn.actors import make_actor

    # pygame (classic-control rendering) opens an audio device it never uses; keep it quiet.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    q_net.eval()
    env = make_env(get_spec(env_id), training=False, render_mode="rgb_array")
    actor = make_actor(q_net, 1, int(env.action_space.n), device)
    obs, _ = env.reset(seed=seed)
    frames, observations, actions, total = [env.render()], [], [], 0.0
    for _ in range(max_steps):
        action = int(actor.act(obs[None])[0])
        observations.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        actor.observe(np.array([terminated]), np.array([truncated]))
        total += float(reward)
        frames.append(env.render())
        if terminated or truncated:
            break
    env.close()
    return Episode(np.stack(frames).astype(np.uint8), np.stack(observations), np.asarray(actions, dtype=np.int64), total)


def record_episode(
    q_net: torch.nn.Module,
    env_id: str,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_steps: int = 10_000,
) -> tuple[np.ndarray, float]:
    """Play one greedy episode with rgb_array rendering; returns (frames (T, H, W, 3) uint8, return)."""
    episode = play_recorded(q_net, env_id, seed=seed, device=device, max_steps=max_steps)
    return episode.frames, episode.total


def write_video(frames: np.ndarray, path: str | Path, fps: int = 30) -> Path:
    """Write (T, H, W, 3) uint8 frames; the suffix picks the format (.mp4 or .gif)."""
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise InputError(f"--video {str(path)!r}: use a .mp4 or .gif file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        imageio.mimsave(path, list(frames), duration=1000 / fps, loop=0)
    else:
        # Even sizes keep H.264 encoders happy.
        h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        imageio.mimsave(path, list(frames[:, :h, :w]), fps=fps, macro_block_size=1)
    return path
