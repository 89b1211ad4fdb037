"""``rlgen explain``: pictures of what a trained network does, written beside the run and into TensorBoard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlgen.errors import InputError


def _writer(out: Path):
    """TensorBoard events in ``out`` (RUN/explain shows as its own run under `tensorboard --logdir runs`)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out))


def _strip(rows: list[np.ndarray], count: int) -> np.ndarray:
    """``count`` evenly spaced frames of each (T, H, W, 3) row, as one picture: a row per kind."""
    steps = len(rows[0])
    picks = np.linspace(0, steps - 1, num=min(count, steps)).round().astype(int)
    gap = 4
    lines = []
    for row in rows:
        tiles = [row[i] for i in picks]
        spacer = np.full((tiles[0].shape[0], gap, 3), 255, dtype=np.uint8)
        line = [tiles[0]]
        for tile in tiles[1:]:
            line += [spacer, tile]
        lines.append(np.concatenate(line, axis=1))
    spacer = np.full((gap, lines[0].shape[1], 3), 255, dtype=np.uint8)
    out = [lines[0]]
    for line in lines[1:]:
        out += [spacer, line]
    return np.concatenate(out, axis=0)


def _save_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path)
    return path


def explain_dqn(run: Path, out: Path, *, seed: int, max_steps: int, video: str, frames: int) -> list[Path]:
    from rlgen.dqn import DQNAgent
    from rlgen.backbones import TransformerBackbone
    from rlgen.dqn.recurrent_networks import WindowQNetwork
    from rlgen.dqn.video import play_recorded, write_video
    from rlgen.explain.attention import attention_picture, episode_attention
    from rlgen.explain.saliency import grad_cam, gradient_saliency, overlay
    from rlgen.training.logger import gif_summary

    agent = DQNAgent.load(run)
    env_id, q_net = agent.config.env_id, agent.q_net.eval()
    image_obs = len(agent.obs_space.shape) == 3
    if isinstance(q_net, WindowQNetwork) and isinstance(q_net.backbone, TransformerBackbone):
        episode = play_recorded(q_net, env_id, seed=seed, max_steps=max_steps)
        picture = attention_picture(episode_attention(q_net, episode.observations))
        path = _save_png(picture, out / "attention.png")
        with _writer(out) as tb:
            tb.add_image("explain/attention", picture, 0, dataformats="HWC")
        return [path]
    if agent.is_sequence:
        raise InputError(f"saliency of a {agent.config.backbone.kind} Q-network is not supported: its Q-values depend "
                         "on the whole history, not on one frame; rlgen explains feed-forward image Q-networks and "
                         "transformer attention")
    if not image_obs:
        raise InputError(f"{env_id} has vector observations {agent.obs_space.shape}: saliency and Grad-CAM need image "
                         "observations (C, H, W), attention a transformer Q-network")
    episode = play_recorded(q_net, env_id, seed=seed, max_steps=max_steps)
    shown = episode.frames[:-1]  # the frame the agent saw before each action
    saliency = overlay(shown, gradient_saliency(q_net, episode.observations, episode.actions))
    cam = overlay(shown, grad_cam(q_net, episode.observations, episode.actions))
    paths = [write_video(saliency, out / f"saliency.{video}"), write_video(cam, out / f"gradcam.{video}")]
    strip = _strip([shown, saliency, cam], frames)
    paths.append(_save_png(strip, out / "saliency.png"))
    with _writer(out) as tb:
        tb.add_image("explain/frames_saliency_gradcam", strip, 0, dataformats="HWC")
        for tag, clip in (("explain/saliency", saliency), ("explain/gradcam", cam)):
            tb._get_file_writer().add_summary(gif_summary(tag, clip, 15), 0)  # as RunLogger.video: no moviepy
    return paths


def explain_vae(run: Path, out: Path, *, steps: int) -> list[Path]:
    from rlgen.explain.traversal import latent_traversal
    from rlgen.generative.vae.sample import load
    from rlgen.training import make_grid, save_image_grid

    vae, config, _ = load(run, torch.device("cpu"))
    images, _ = latent_traversal(vae, config.likelihood, steps=steps)
    path = save_image_grid(images, out / "traversal.png", nrow=steps)
    with _writer(out) as tb:
        tb.add_image("explain/latent_traversal", make_grid(images, nrow=steps), 0)
    return [path]


def explain_run(run: str | Path, out: str | Path | None = None, *, seed: int = 0, max_steps: int = 1000,
                video: str = "gif", frames: int = 6, steps: int = 9) -> list[Path]:
    """Write the pictures that fit ``run`` into ``out`` (default ``RUN_DIR/explain``); returns the files."""
    from rlgen.dqn.agent import checkpoint_path
    from rlgen.training import checkpoint_info

    if video not in ("gif", "mp4"):
        raise InputError(f"--video {video!r}: choose gif or mp4")
    for name, value in (("--max-steps", max_steps), ("--frames", frames), ("--steps", steps)):
        if value < 1:
            raise InputError(f"{name} {value} must be >= 1")
    path = checkpoint_path(run)
    algo = checkpoint_info(path)["meta"].get("algo")
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    out = Path(out) if out is not None else run_dir / "explain"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a directory for the pictures")
    if algo in ("dqn", "pqn"):
        out.mkdir(parents=True, exist_ok=True)
        return explain_dqn(path, out, seed=seed, max_steps=max_steps, video=video, frames=frames)
    if algo == "vae":
        out.mkdir(parents=True, exist_ok=True)
        return explain_vae(run_dir, out, steps=steps)
    raise InputError(f"{path} is a {algo!r} run; rlgen explain covers DQN runs (saliency, Grad-CAM, attention) and "
                     "VAE runs (latent traversals); for a GAN see `rlgen sample gan --interpolate`")
