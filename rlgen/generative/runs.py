"""Run directories of the generative models: checkpoint meta, finding runs, scalar history.

The three training loops (``vae``, ``wgan_gp``, ``diffusion``) and the sampler share
these few run-plumbing pieces; the loops themselves stay in each model's ``train``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rlgen.config import from_dict, to_dict
from rlgen.errors import CheckpointError, RlgenError
from rlgen.training import Checkpoint, RunLogger, load_checkpoint

CHECKPOINT_NAME = "checkpoint.safetensors"
MODELS = ("vae", "gan", "diffusion")


def dataset_meta(dataset: Any) -> dict[str, Any]:
    """What a checkpoint needs to rebuild a model without the data: shape and classes."""
    return {
        "dataset": dataset.name,
        "image_shape": list(dataset.images.shape[1:]),
        "num_classes": int(dataset.num_classes),
        "class_names": list(dataset.class_names),
    }


def make_logger(logdir: str | Path, algo: str, config: Any, resume: Path | None) -> RunLogger:
    """A new run dir ``{logdir}/{data}__{algo}__{seed}__{time}``, or the resumed run's own."""
    config_dict = to_dict(config)
    if resume is not None:
        return RunLogger(resume.parent, config.data, algo, config.seed, config_dict, run_name=resume.name)
    data = Path(config.data)
    task = data.name if data.is_dir() else data.stem if data.is_file() else config.data  # a folder, a frames file
    return RunLogger(logdir, task, algo, config.seed, config_dict)


def run_directory(path: str | Path) -> Path:
    """A run directory given as itself or as its checkpoint file."""
    path = Path(path)
    return path.parent if path.is_file() and path.name == CHECKPOINT_NAME else path


def open_run(run_dir: str | Path, algo: str) -> Checkpoint:
    """Load a run's checkpoint (``run_dir`` or the checkpoint file itself) and check that ``algo`` wrote it."""
    run_dir = run_directory(run_dir)
    if not run_dir.is_dir():
        raise RlgenError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} holds no {CHECKPOINT_NAME}; it is not a finished or saved rlgen run")
    checkpoint = load_checkpoint(path)
    found = checkpoint.meta.get("algo")
    if found != algo:
        use = f"`rlgen sample {found}`" if found in MODELS else "`rlgen eval` or `rlgen enjoy`"
        raise CheckpointError(f"{str(path)!r} is a {found!r} checkpoint, not {algo!r}; use {use}")
    return checkpoint


def config_from_run(checkpoint: Checkpoint, config_cls: type) -> Any:
    """Rebuild the dataclass config a checkpoint carries (fields added since are defaulted)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    saved = {k: v for k, v in checkpoint.meta["config"].items() if k in names}
    return from_dict(config_cls, saved)


def find_latest_run(logdir: str | Path, algo: str) -> Path:
    """The newest ``{logdir}/{task}__{algo}__{seed}__{time}`` run that has a checkpoint."""
    logdir = Path(logdir)
    candidates = []
    if logdir.is_dir():
        for path in logdir.iterdir():
            parts = path.name.split("__")
            if len(parts) >= 4 and parts[-3] == algo and parts[-1].isdigit() and (path / CHECKPOINT_NAME).is_file():
                candidates.append((int(parts[-1]), path.stat().st_mtime, path.name, path))
    if not candidates:
        raise RlgenError(
            f"no trained {algo} run under {str(logdir)!r}; train one with: rlgen train {algo} --data digits"
        )
    return max(candidates)[-1]


def record_scalars(
    logger: RunLogger, history: dict[str, list[float]], scalars: Mapping[str, torch.Tensor | float], step: int
) -> dict[str, float]:
    """Log scalars to TensorBoard and the history with one device sync for all tensors."""
    tensors = {k: v for k, v in scalars.items() if isinstance(v, torch.Tensor)}
    values = {k: float(v) for k, v in scalars.items() if not isinstance(v, torch.Tensor)}
    if tensors:
        stacked = torch.stack([t.detach().float().reshape(()) for t in tensors.values()]).tolist()
        values.update(zip(tensors, stacked, strict=True))
    for tag, value in values.items():
        logger.scalar(tag, value, step)
        history.setdefault(tag, []).append(value)
    return values


def sample_metrics(
    samples01: torch.Tensor,
    dataset: str,
    data_dir: str | None,
    device: torch.device,
    labels: torch.Tensor | None = None,
    inception_weights: str | None = None,
) -> dict[str, float]:
    """Domain FID / KID of samples (N, C, H, W) in [0, 1] vs the test split, as ``eval/`` scalars.

    The floor (real train images vs test) is reported beside each metric; with
    ``labels``, ``eval/class_match`` is the share the classifier puts in the requested class;
    with ``inception_weights``, ``eval/inception_fid`` is torchmetrics' FID.
    """
    from rlgen.generative.evaluation import evaluate_samples

    result = evaluate_samples(
        samples01, dataset, labels=labels, data_dir=data_dir, device=device, inception_weights=inception_weights
    )
    keys = ("fid", "fid_floor", "kid", "kid_floor", "class_match", "inception_fid")
    return {f"eval/{key}": result[key] for key in keys if key in result}
