"""The run plumbing the three generative trainers share; each keeps its own step body written out.

``GenerativeRun`` owns what is the same in every run: the device, the run's
random streams (``RunRNG``: weights, noise, dropout), the data order
(``BatchStream``, resumable mid-epoch), resuming named modules / optimizers /
schedules, saving (rotating checkpoints, ``rlgen.training.RunCheckpoints``),
the log window with named running sums and images/s, and the end of the run
(save first, then the final evaluation, so an evaluation can never cost the
checkpoint), and data parallelism under torchrun (``rlgen.training.distributed``:
the global batch split over ranks, rank 0 logging, saving and evaluating, a stop
on any rank stopping all).

A trainer reads::

    run = GenerativeRun("vae", config, logdir=..., device=..., resume=...)
    with run.rng.active():
        model, optimizer = ..., ...
        step = run.start(modules={"vae": model}, optimizers={"vae": optimizer})
        with run.loop(step) as bar:
            while step < config.steps:
                step += 1
                images, _ = run.batches.next()     # the global batch
                noise = torch.randn(...)           # drawn at the global batch's shape
                images, noise = run.shard(images, noise)   # this rank's rows
                ...                                 # the model's own step, written out
                run.window.add(loss, ...)
                run.log_window(step, bar)
                run.maybe_checkpoint(step)
                bar.update(1)
                if run.stop_requested:
                    break
        return run.finish(step, final_eval=...)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from rlgen.config import to_dict
from rlgen.data import load_dataset
from rlgen.errors import CheckpointError, InputError
from rlgen.generative.runs import dataset_meta, make_logger, record_scalars
from rlgen.training import (
    DataParallel,
    GracefulInterrupt,
    ProgressBar,
    RunCheckpoints,
    RunRNG,
    TrainResult,
    RunLogger,
    load_checkpoint,
    resume_location,
    set_deterministic,
)
from rlgen.training.transfer import load_transfer, optimizer_params, run_inputs

# Fields a resumed generative run may change: its budget and how it reports and saves.
RESUMABLE_FIELDS = ("steps", "log_interval", "sample_interval", "checkpoint_interval", "eval_interval",
                    "eval_samples", "keep_checkpoints")


class BatchStream:
    """Endless shuffled minibatches, reshuffled every epoch, that resume mid-epoch.

    Same order as ``rlgen.data.batches`` (one ``randperm`` per epoch from a seeded
    CPU generator, the last partial batch dropped); the state is the generator's
    state at the epoch's start and the position in it.
    """

    def __init__(self, dataset, batch_size: int, seed: int, device: torch.device):
        n = len(dataset)
        if batch_size > n:
            raise InputError(f"batch_size={batch_size} is larger than the dataset {dataset.name!r} ({n} images); "
                             "use a smaller batch size")
        self.images, self.labels = dataset.images.to(device), dataset.labels.to(device)
        self.batch_size, self.device = batch_size, device
        self.end = n - n % batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch_state = self.generator.get_state()
        self.perm = torch.randperm(len(self.images), generator=self.generator).to(self.device, non_blocking=True)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, C, H, W) uint8, labels (B,) int64) on the device."""
        if self.pos >= self.end:
            self._new_epoch()
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.images[idx], self.labels[idx]

    def state_dict(self) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
        return {"pos": self.pos}, {"data_rng": self.epoch_state}

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(tensors["data_rng"].cpu())
        self._new_epoch()
        self.pos = int(meta["pos"])


class LogWindow:
    """Named running sums between two logs (kept on the device: no sync per step), and images/s."""

    def __init__(self, names: tuple[str, ...], images_per_step: int, device: torch.device,
                 parallel: DataParallel | None = None):
        self.names, self.images_per_step = names, images_per_step
        self.parallel = parallel
        self.sums = torch.zeros(len(names), device=device)
        self.steps, self.start = 0, time.perf_counter()

    def add(self, *values: torch.Tensor) -> None:
        self.sums += torch.stack([v.detach().float().reshape(()) for v in values])
        self.steps += 1

    def close(self) -> dict[str, torch.Tensor | float]:
        """The window's means by name and ``charts/images_per_second``; starts the next window."""
        elapsed = time.perf_counter() - self.start
        sums = self.parallel.mean(self.sums) if self.parallel is not None else self.sums  # over the ranks
        means = sums / max(self.steps, 1)
        out: dict[str, torch.Tensor | float] = {name: means[i] for i, name in enumerate(self.names)}
        out["charts/images_per_second"] = self.steps * self.images_per_step / max(elapsed, 1e-9)
        self.sums = torch.zeros_like(self.sums)
        self.steps, self.start = 0, time.perf_counter()
        return out

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent here (samples, evaluation, saving) stays out of images/s."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - start


class GenerativeRun:
    """Set-up, resume, save, log window and finish of one generative run (see the module docstring).

    Args:
        algo: ``vae``, ``gan`` or ``diffusion`` (the checkpoint's ``algo``).
        config: the model's config dataclass (``data``, ``seed``, ``steps``, ``batch_size``,
            ``log_interval``, ``checkpoint_interval``, ``keep_checkpoints``, ``image_size``).
        window: names of the running sums the step body adds, in order.
        images_per_step: images one step consumes over all ranks (for images/s).

    Under torchrun (``RANK`` / ``WORLD_SIZE`` set) the run is one rank of a data-parallel job:
    ``shard`` keeps the rank's rows of a global-batch tensor, ``wrap`` puts a module in DDP,
    only rank 0 (``is_main``) has a logger and writes checkpoints, and ``stop_requested`` is
    agreed by all ranks every step.
    """

    def __init__(self, algo: str, config: Any, *, window: tuple[str, ...], images_per_step: int,
                 logdir: str | Path = "runs", device: str = "auto", data_dir: str | None = None,
                 download: bool = False, resume: str | Path | None = None, progress: bool | None = None,
                 on_eval: Callable[[int, dict[str, float]], bool] | None = None):
        self.algo, self.config, self.logdir = algo, config, logdir
        # Called with (step, metrics) after each evaluation; True stops the run there as a stop
        # request would (a pruned tuning trial).
        self.on_eval, self._stop_after_eval = on_eval, False
        self.parallel = DataParallel(device)
        self.device, self.is_main = self.parallel.device, self.parallel.is_main
        self.parallel.check_batch(config.batch_size)
        self.shard, self.wrap = self.parallel.shard, self.parallel.wrap
        self.progress = progress if self.is_main else False
        self.start_time = time.perf_counter()
        self.resume_file, self.resume_dir = resume_location(resume) if resume is not None else (None, None)
        self.checkpoint = self._check_resume() if self.resume_file is not None else None
        set_deterministic(False)
        self.rng = RunRNG(config.seed)  # weights, noise, label dropout, dropout
        self.train_set = load_dataset(config.data, "train", data_dir=data_dir, download=download,
                                      image_size=getattr(config, "image_size", 0) or None)
        self.data = dataset_meta(self.train_set)
        self.batches = BatchStream(self.train_set, config.batch_size, config.seed, self.device)
        self.window = LogWindow(window, images_per_step, self.device, self.parallel)
        self.history: dict[str, list[float]] = {}
        self.metrics: dict[str, float] = {}
        self.interrupt: GracefulInterrupt | None = None
        self._stopping = False
        self.parts: dict[str, dict] = {}
        self.logger: RunLogger | None = None  # rank 0 only

    def _check_resume(self):
        """Everything about the resume checked before any data is loaded or any step taken."""
        file = self.resume_file
        if self.resume_dir is None:
            raise CheckpointError(f"{file} is not inside its own run directory; pass the run directory to --resume")
        checkpoint = load_checkpoint(file, map_location=self.device)
        found = checkpoint.meta.get("algo")
        if found != self.algo:
            raise CheckpointError(f"{file} is a {found!r} checkpoint, not {self.algo!r}; "
                                  f"resume it with `rlgen train {found} --resume {self.resume_dir}`")
        saved, given = checkpoint.meta.get("config", {}), to_dict(self.config)
        changed = sorted(k for k in given if k not in RESUMABLE_FIELDS and k in saved and saved[k] != given[k])
        if changed:
            raise InputError(f"a resumed run keeps its config, but {', '.join(changed)} differ from {file}; "
                             f"on resume only {', '.join(RESUMABLE_FIELDS)} may change")
        done = int(checkpoint.meta["step"])
        if self.config.steps < done:
            raise InputError(f"--steps {self.config.steps:,} is below the {done:,} steps this run has done; "
                             "pass a larger budget, or sample from it with `rlgen sample`")
        return checkpoint

    # -- parts -------------------------------------------------------------------------------

    def params(self, name: str, module: torch.nn.Module, learning_rate: float) -> list:
        """What the optimizer of ``module`` (named as in checkpoints) trains; loads ``config.transfer``
        into it first when it is the target (in a new run: a resumed one has the weights already)."""
        transfer = self.config.transfer
        if transfer.init_from and self.checkpoint is None and transfer.target.partition(".")[0] == name:
            load_transfer(transfer, {name: module}, run_inputs(self.algo, {"data": self.data}))
        return optimizer_params(transfer, name, module, learning_rate)

    def start(self, *, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
              schedules: dict[str, Any] | None = None) -> int:
        """Name the run's parts, restore them from the resumed checkpoint, open the log; returns the step."""
        self.parts = {"modules": modules, "optimizers": optimizers, "schedules": schedules or {}}
        step = 0
        if self.checkpoint is not None:
            ckpt = self.checkpoint
            for name, module in modules.items():
                ckpt.load_module(name, module)
            for name, optimizer in optimizers.items():
                ckpt.load_optimizer(name, optimizer)
            for name, schedule in (schedules or {}).items():
                schedule.load_state_dict(ckpt.meta["schedules"][name])
            extra = ckpt.extra
            if "run_rng" in ckpt.meta:
                self.rng.load_state_dict(ckpt.meta["run_rng"], extra)
                self.batches.load_state_dict(ckpt.meta["batches"], extra)
            else:  # saved before runs owned their streams: the old global state, the epoch restarts
                ckpt.restore_rng()
                self.batches.generator.set_state(extra["data_rng"].cpu())
                self.batches._new_epoch()
            step = int(ckpt.meta["step"])
        if self.is_main:
            self.logger = make_logger(self.logdir, self.algo, self.config, self.resume_dir)
            run_id = self.checkpoint.meta.get("run_id") if self.checkpoint is not None else None
            self.checkpoints = RunCheckpoints(self.logger.run_dir, self.config.keep_checkpoints, run_id=run_id)
        self.run_dir = Path(self.parallel.broadcast_text(str(self.logger.run_dir) if self.is_main else ""))
        return step

    def save(self, step: int, **meta: Any) -> Path | None:
        """Write a checkpoint (rank 0; every rank holds the same state). None on the other ranks."""
        if not self.is_main:
            return None
        rng_meta, rng_tensors = self.rng.state_dict()
        batch_meta, batch_tensors = self.batches.state_dict()
        return self.checkpoints.save(
            step, modules=self.parts["modules"], optimizers=self.parts["optimizers"],
            extra_tensors={**rng_tensors, **batch_tensors},
            meta={"algo": self.algo, "step": step, "config": to_dict(self.config), "data": dict(self.data),
                  "schedules": {k: s.state_dict() for k, s in self.parts["schedules"].items()},
                  "run_rng": rng_meta, "batches": batch_meta, **meta},
        )

    # -- the loop ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def loop(self, start_step: int) -> Iterator[ProgressBar]:
        """Ctrl-C / SIGTERM handling and the progress bar around the step loop."""
        hide_bar = None if self.progress is None else not self.progress  # None: shown on terminals only
        with GracefulInterrupt() as interrupt, ProgressBar(self.config.steps, desc=self.algo, disable=hide_bar) as bar:
            self.interrupt = interrupt
            bar.update(start_step)
            self.window.start = time.perf_counter()
            yield bar

    def rank_randomness(self, step: int) -> contextlib.AbstractContextManager:
        """Around the network's forward: dropout drawn per rank under DDP (seed of run, step and rank)."""
        return self.parallel.rank_randomness((self.config.seed * 1_000_003 + step) % 2**62)

    @property
    def stop_requested(self) -> bool:
        """A signal or a pruned evaluation asked to stop (on any rank: all ranks agree, once a step)."""
        asked = self._stop_after_eval or (self.interrupt is not None and self.interrupt.requested)
        self._stopping = self._stopping or self.parallel.any(asked)
        return self._stopping

    def log_window(self, step: int, bar: ProgressBar, extra: dict[str, Any] | None = None,
                   **shown: str) -> dict[str, float] | None:
        """Every ``log_interval`` steps (and at the last): write the window's means; ``shown`` maps bar
        labels to tags. Returns the values written, None between logs."""
        if step % self.config.log_interval and step != self.config.steps:
            return None
        window = self.window.close()  # every rank: the window's means are averaged over the ranks
        if not self.is_main:
            return None
        values = record_scalars(self.logger, self.history, {**window, **(extra or {})}, step)
        bar.update(0, **{label: values[tag] for label, tag in shown.items()})
        return values

    def maybe_checkpoint(self, step: int, **meta: Any) -> None:
        interval = self.config.checkpoint_interval
        if interval and step % interval == 0:
            with self.window.paused():
                self.save(step, **meta)

    def record(self, metrics: dict[str, float], step: int) -> None:
        """Log an evaluation (rank 0, which alone evaluates) and hand it to ``on_eval``."""
        self.metrics = metrics
        record_scalars(self.logger, self.history, metrics, step)
        if self.on_eval is not None and step < self.config.steps and self.on_eval(step, metrics):
            self._stop_after_eval = True

    def finish(self, step: int, *, final_images: Callable[[], tuple[str, torch.Tensor]] | None = None,
               final_eval: Callable[[], dict[str, float]] | None = None, **meta: Any) -> TrainResult:
        """Save first; then the last sample grid and (for a finished run) the final evaluation (rank 0)."""
        interrupted = self._stopping
        checkpoint = self.save(step, **meta)
        if self.is_main:
            if final_images is not None:
                tag, images = final_images()
                self.logger.image_grid(tag, images, step)
            if final_eval is not None and not interrupted:
                self.record(final_eval(), step)
            self.logger.hparams_final(self.metrics)
            self.logger.close()
        self.rng.release()
        self.parallel.close()
        return TrainResult(run_dir=self.run_dir, checkpoint=checkpoint, step=step, metrics=self.metrics,
                           history=self.history, interrupted=interrupted,
                           wall_seconds=time.perf_counter() - self.start_time)

