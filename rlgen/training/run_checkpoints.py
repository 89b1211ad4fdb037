"""A run directory's checkpoints: the newest as ``checkpoint.safetensors``, the last K kept, replay in one unit.

Layout of a run directory::

    checkpoint.safetensors                 the newest checkpoint (eval, enjoy, sample, resume read it)
    checkpoints/step-000000050000.safetensors   the last ``keep`` checkpoints, oldest first
    replay-000000050000-<token>.safetensors     the replay saved with the newest checkpoint

A save writes the companion file (replay) first, then the checkpoint that
names it and its token, each to a temp file that is fsynced and renamed; the
newest checkpoint becomes ``checkpoint.safetensors`` by an atomic rename too.
A crash at any point leaves the previous checkpoint and the replay it names
intact, and a resume never pairs a checkpoint with another moment's replay.
Only the newest checkpoint keeps its replay (replays can be gigabytes); an older
one resumes with an empty replay and says so.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from rlgen.errors import CheckpointError, InputError
from rlgen.training.checkpoint import HISTORY, checkpoint_info, save_checkpoint

LATEST = "checkpoint.safetensors"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(source: Path, latest: Path) -> None:
    """Make ``latest`` the same bytes as ``source`` atomically (a hard link where the file system allows)."""
    tmp = latest.with_name(latest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, latest)


class RunCheckpoints:
    """Saves into one run directory and keeps its last ``keep`` checkpoints.

    Args:
        run_dir: the run's directory.
        keep: checkpoints kept in ``checkpoints/`` (>= 1).
        run_id: the run's identity, written into every checkpoint; a resumed run passes its
            checkpoint's, a new run gets a fresh one.
    """

    def __init__(self, run_dir: Path, keep: int, run_id: str | None = None):
        if keep < 1:
            raise InputError(f"keep_checkpoints={keep} must be >= 1")
        self.run_dir = Path(run_dir)
        self.keep = keep
        self.run_id = run_id or secrets.token_hex(8)
        self.latest = self.run_dir / LATEST

    def history(self) -> list[Path]:
        """The kept checkpoints, oldest first."""
        return sorted((self.run_dir / HISTORY).glob("step-*.safetensors"))

    def save(self, step: int, *, modules, optimizers=None, extra_tensors=None, meta: dict,
             companion: Callable[[Path, str], object] | None = None, companion_name: str = "replay") -> Path:
        """Write one checkpoint (and its companion file, e.g. replay) as a unit; returns ``checkpoint.safetensors``.

        Args:
            companion: ``write(path, token)`` for a file saved with this checkpoint.
        """
        token = secrets.token_hex(6)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta = {**meta, "run_name": self.run_dir.name, "run_id": self.run_id, "token": token}
        if companion is not None:
            name = f"{companion_name}-{step:012d}-{token}.safetensors"
            companion(self.run_dir / name, token)
            meta[companion_name] = {"file": name, "token": token}
        path = save_checkpoint(self.run_dir / HISTORY / f"step-{step:012d}.safetensors", modules=modules,
                               optimizers=optimizers, extra_tensors=extra_tensors, meta=meta)
        _fsync_dir(path.parent)
        _publish(path, self.latest)
        _fsync_dir(self.run_dir)
        self._prune(keep_companion=meta.get(companion_name, {}).get("file"), companion_name=companion_name)
        return self.latest

    def _prune(self, keep_companion: str | None, companion_name: str) -> None:
        for old in self.history()[: -self.keep]:
            old.unlink(missing_ok=True)
        for old in self.run_dir.glob(f"{companion_name}-*.safetensors"):
            if old.name != keep_companion:
                old.unlink(missing_ok=True)


def resume_location(path: str | Path) -> tuple[Path, Path | None]:
    """The checkpoint file to resume from and the run directory it belongs to.

    ``path`` is a run directory or a checkpoint file. The run directory is where the
    checkpoint lives (or the folder above ``checkpoints/``) when that directory is its
    run's own: its newest checkpoint carries the same run id. Otherwise None: the
    resumed run gets a new directory and never writes into a folder not its own.
    """
    path = Path(path)
    if path.is_dir():
        file = path / LATEST
        if not file.is_file():
            raise CheckpointError(f"run directory {path} holds no {LATEST}; pass a run directory or a .safetensors file")
    elif path.is_file():
        file = path
    else:
        raise CheckpointError(f"--resume {path} does not exist; pass a run directory or a checkpoint file in it")
    run_id = _run_id(file)
    for candidate in (file.parent, file.parent.parent if file.parent.name == HISTORY else None):
        if candidate is None or not (candidate / LATEST).is_file():
            continue
        if run_id is None:  # saved before runs had ids: the run's own checkpoint.safetensors only
            if file == candidate / LATEST and (candidate / "config.json").is_file():
                return file, candidate
        elif _run_id(candidate / LATEST) == run_id:
            return file, candidate
    return file, None


def _run_id(file: Path) -> str | None:
    run_id = checkpoint_info(file)["meta"].get("run_id")
    return run_id if isinstance(run_id, str) else None
