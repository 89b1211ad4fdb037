"""TensorBoard logging for one run, plus image grids saved as PNG.

One run directory per run, named like CleanRL's
``{task}__{algo}__{seed}__{unix_time}``, holding the TensorBoard event file and
``config.json``. Tags use the namespaces ``charts/`` (returns, SPS, lr),
``losses/``, ``eval/`` and ``samples/``.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from rlgen.errors import InputError


def flatten_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, so nested configs fit in one table."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _hparam_value(value: Any) -> bool | int | float | str:
    """A value the TensorBoard hparams plugin can show: numbers and strings as is, the rest as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """Tile a batch of images into one image, row by row.

    Args:
        images: (N, C, H, W).
        nrow: images per row; the grid has ``min(nrow, N)`` columns and
            ``ceil(N / nrow)`` rows.
        padding: pixels of ``pad_value`` around and between images.
        pad_value: the fill value of the padding and of empty cells.

    Returns:
        (C, rows * (H + padding) + padding, cols * (W + padding) + padding).
    """
    if images.dim() != 4:
        raise InputError(f"make_grid expects images of shape (N, C, H, W); got {tuple(images.shape)}")
    if nrow < 1:
        raise InputError(f"nrow must be >= 1, got {nrow}")
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / nrow)
    grid = images.new_full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for i in range(n):
        top = padding + (i // nrow) * (h + padding)
        left = padding + (i % nrow) * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write a batch of images in [0, 1] as one PNG grid.

    Args:
        images: (N, C, H, W) with C = 1 (grey), 3 (RGB) or 4 (RGBA), values in [0, 1]
            (clamped).
        path: the PNG to write; parent directories are created.
        nrow: images per row.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3, 4):
        raise InputError(f"save_image_grid expects (N, C, H, W) with C in 1, 3, 4; got {tuple(images.shape)}")
    grid = make_grid(images.detach().float().cpu(), nrow=nrow)  # (C, H', W')
    pixels = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H', W', C)
    if pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def gif_summary(tag: str, frames: np.ndarray, fps: float) -> Summary:
    """An image summary holding an animated GIF, which TensorBoard plays in the Images tab.

    Written with Pillow because ``SummaryWriter.add_video`` needs moviepy.
    """
    if frames.ndim != 4 or frames.shape[3] not in (1, 3) or frames.dtype != np.uint8:
        raise InputError(
            f"video frames must be a uint8 array (T, H, W, C) with C = 1 or 3; got {frames.dtype} {frames.shape}"
        )
    _, h, w, c = frames.shape
    pictures = [Image.fromarray(frame[:, :, 0] if c == 1 else frame) for frame in frames]
    buffer = io.BytesIO()
    duration_ms = max(1, round(1000 / fps))
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)
    image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=buffer.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])


class RunLogger:
    """One run's TensorBoard writer and run directory.

    Args:
        logdir: parent directory of all runs (e.g. ``runs``).
        task: environment id or dataset name; ``/`` becomes ``-`` in the directory name.
        algo: algorithm name (``dqn``, ``vae``, ...).
        seed: the run's seed.
        config: the run's config as a plain dict; written to ``config.json``, as a
            markdown table (text tag ``hyperparameters``) and as hparams.
        run_name: use this directory name instead of the generated one; an
            existing directory is reused (a resumed run keeps logging to it).
    """

    def __init__(
        self,
        logdir: str | Path,
        task: str,
        algo: str,
        seed: int,
        config: dict,
        run_name: str | None = None,
    ) -> None:
        logdir = Path(logdir)
        if logdir.exists() and not logdir.is_dir():
            raise InputError(f"--logdir {logdir} is a file; pass a directory to hold the run directories (default: runs)")
        if run_name is not None:
            self.run_dir = logdir / run_name
            self.run_dir.mkdir(parents=True, exist_ok=True)
        else:
            base = f"{task.replace('/', '-')}__{algo}__{seed}__{int(time.time())}"
            self.run_dir = self._fresh_dir(logdir, base)
        self._writer = SummaryWriter(log_dir=str(self.run_dir))
        self._last_step = 0
        (self.run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        flat = flatten_config(config)
        rows = "\n".join(f"|{key}|{value}|" for key, value in flat.items())
        self._writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{rows}")
        self._hparams = {key: _hparam_value(value) for key, value in flat.items()}
        _, session_start, _ = hparams(self._hparams, {})
        self._writer._get_file_writer().add_summary(session_start)

    @staticmethod
    def _fresh_dir(logdir: Path, base: str) -> Path:
        """Create ``logdir/base``, or ``base-1``, ``base-2``... if runs started in the same second."""
        logdir.mkdir(parents=True, exist_ok=True)
        for i in range(1000):
            candidate = logdir / (base if i == 0 else f"{base}-{i}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
        raise RuntimeError(f"could not create a fresh run directory for {base} in {logdir}")

    def _step(self, step: int) -> int:
        self._last_step = max(self._last_step, step)
        return step

    def scalar(self, tag: str, value: float | torch.Tensor, step: int) -> None:
        """Log one number (a tensor is converted here, which syncs a GPU)."""
        self._writer.add_scalar(tag, float(value), self._step(step))

    def scalars(self, values: dict[str, float | torch.Tensor], step: int) -> None:
        """Log several numbers at the same step, each under its own tag."""
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def text(self, tag: str, markdown: str, step: int) -> None:
        """Log a markdown text (tables render in TensorBoard's Text tab)."""
        self._writer.add_text(tag, markdown, self._step(step))

    def image_grid(self, tag: str, images: torch.Tensor, step: int, nrow: int = 8) -> None:
        """Log a batch of images (N, C, H, W) in [0, 1] as one grid image."""
        grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow)  # (C, H', W')
        self._writer.add_image(tag, grid, self._step(step), dataformats="CHW")

    def histogram(self, tag: str, values: torch.Tensor | np.ndarray, step: int) -> None:
        """Log the distribution of ``values`` (any shape)."""
        if isinstance(values, torch.Tensor):
            values = values.detach().float().cpu()
        self._writer.add_histogram(tag, values, self._step(step))

    def video(self, tag: str, frames: np.ndarray, step: int, fps: float = 30) -> None:
        """Log an episode's frames, a uint8 array (T, H, W, C), as an animated GIF."""
        self._writer._get_file_writer().add_summary(gif_summary(tag, np.asarray(frames), fps), self._step(step))

    def hparams_final(self, metrics: dict[str, float]) -> None:
        """Record the run's final metrics (e.g. ``{"eval/episodic_return": 200.0}``) for the HParams tab."""
        experiment, _, session_end = hparams(self._hparams, {tag: float(v) for tag, v in metrics.items()})
        writer = self._writer._get_file_writer()
        writer.add_summary(experiment)
        for tag, value in metrics.items():
            self._writer.add_scalar(tag, float(value), self._last_step)
        writer.add_summary(session_end)
        self.flush()

    def flush(self) -> None:
        """Write pending events to disk."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
