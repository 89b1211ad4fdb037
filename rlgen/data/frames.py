"""Frames of an environment as an image dataset: random play saved as one safetensors file.

``rlgen collect-frames MinAtar/Breakout-v1 --steps 20000 --out breakout.safetensors`` writes the
observations of uniformly random play, (N, C, H, W) uint8 with MinAtar's 0/1 channels as 0/255,
so the generative models read them in their usual [0, 1] / [-1, 1] ranges, which is what a
Q-network's CNN reads from the same environment (booleans as 0/1, uint8 pixels / 255). Any
model that takes ``--data`` takes the file (``rlgen train vae --data breakout.safetensors``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rlgen.errors import InputError, RlgenError

FORMAT = "rlgen-frames"


def collect_frames(env_id: str, steps: int, seed: int = 0, num_envs: int = 8) -> np.ndarray:
    """Observations of ``steps`` random vector-env steps' worth of frames, (N, C, H, W) uint8."""
    from rlgen.envs import make_vector_env

    if steps < 1:
        raise InputError(f"--steps {steps} must be >= 1")
    envs = make_vector_env(env_id, num_envs, seed=seed)
    space = envs.single_observation_space
    if len(space.shape) != 3 or space.dtype not in (np.bool_, np.uint8):
        envs.close()
        raise InputError(f"{env_id} observations are {space.dtype} {space.shape}, not images (C, H, W) of bool or "
                         "uint8; collect-frames takes image environments such as MinAtar/Breakout-v1")
    envs.action_space.seed(seed)
    obs, _ = envs.reset(seed=seed)
    frames = []
    for _ in range(-(-steps // num_envs)):
        frames.append(obs.copy())
        obs, *_ = envs.step(envs.action_space.sample())
    envs.close()
    images = np.concatenate(frames)[:steps]
    return images.astype(np.uint8) * 255 if images.dtype == np.bool_ else images


def save_frames(images: np.ndarray, path: str | Path, env_id: str, seed: int) -> Path:
    from safetensors.numpy import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"--out {path} must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    meta = {"format": FORMAT, "env_id": env_id, "seed": str(seed), "frames": str(len(images))}
    save_file({"images": np.ascontiguousarray(images)}, str(tmp), metadata=meta)
    tmp.replace(path)  # whole or not at all
    return path


def load_frames(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images, labels, class names) of one split: every tenth frame is the test split."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or "images" not in f.keys():
                raise RlgenError(f"{path} is not a frames file written by `rlgen collect-frames`")
            images = f.get_tensor("images")
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise RlgenError(f"{path} is not a readable safetensors file ({exc}); collect it again") from None
    if images.ndim != 4 or images.dtype != np.uint8:
        raise RlgenError(f"{path} holds images {images.dtype} {images.shape}; expected (N, C, H, W) uint8")
    test = np.arange(len(images)) % 10 == 0
    keep = test if split == "test" else ~test
    return images[keep], np.zeros(int(keep.sum()), dtype=np.int64), []
