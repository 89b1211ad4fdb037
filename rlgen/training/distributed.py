"""Data-parallel training under ``torchrun``: the one place that knows about ranks.

``torchrun --nproc-per-node N -m rlgen train MODEL ...`` starts N copies of the
command with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set (nanoGPT's
``train.py`` reads the same variables). ``DataParallel`` turns them into a
process group (NCCL on GPUs, gloo on CPU), a device per local rank, and the
few operations the generative loops need; without torchrun it is a one-process
stand-in whose operations do nothing, so the loops read the same either way.

How a DDP run stays *the same run* as one process on the combined batch:

* ``batch_size`` is the global batch. Every rank draws the same global batch
  of indices from the shared data order (``BatchStream``) and the same random
  numbers from the run's shared stream, at the global batch's shape, and keeps
  its own rows (``shard``). DDP averages the gradients of the per-rank means,
  which is the gradient of the mean over the global batch. So the weights after
  k steps equal a one-process run's (up to float summation order, tested), a
  checkpoint is the same whatever the number of ranks, and a run resumes on a
  different number of them.
* What is random *inside* a network (dropout) is drawn per rank, from a seed of
  the run and the step plus the rank (nanoGPT's ``seed_offset``): ``rank_randomness``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from rlgen.errors import InputError
from rlgen.training.device import resolve_device

log = logging.getLogger(__name__)

# The last collective's work of each job, freed by the interpreter at exit, never by gloo's
# worker thread (``DataParallel.close``).
_FINAL_WORK: list[dist.Work] = []


@dataclass(frozen=True)
class Ranks:
    """Where this process sits in a torchrun job (0 of 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_env() -> Ranks:
    """Read ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` as torchrun sets them."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks()
    try:
        ranks = Ranks(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
                      int(os.environ["WORLD_SIZE"]))
    except ValueError:
        raise InputError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (torchrun sets them); "
                         "start data-parallel runs with torchrun") from None
    if not 0 <= ranks.rank < ranks.world_size:
        raise InputError(f"RANK={ranks.rank} is outside WORLD_SIZE={ranks.world_size}; start the job with torchrun")
    return ranks


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class DataParallel:
    """The torchrun process group of one run, or a one-process stand-in.

    Args:
        device: the ``--device`` spec. Under torchrun ``auto`` / ``cuda`` become
            ``cuda:LOCAL_RANK`` (one GPU per process) and ``cpu`` stays CPU (gloo).
    """

    def __init__(self, device: str = "auto"):
        self.ranks = ranks_from_env()
        self.world_size, self.rank = self.ranks.world_size, self.ranks.rank
        self.enabled = self.world_size > 1
        self._owns_group = False
        if not self.enabled:
            self.device = resolve_device(device)
            return
        spec = device.strip().lower()
        if spec.startswith("cuda:"):
            raise InputError(f"--device {device} picks one GPU, but under torchrun every rank takes "
                             "cuda:LOCAL_RANK; pass --device cuda (or auto), and CUDA_VISIBLE_DEVICES to choose GPUs")
        chosen = resolve_device(device)
        if chosen.type == "cuda":
            if self.ranks.local_rank >= torch.cuda.device_count():
                raise InputError(f"LOCAL_RANK={self.ranks.local_rank} but this node has {torch.cuda.device_count()} "
                                 "GPUs; start at most that many processes per node (--nproc-per-node)")
            self.device = torch.device("cuda", self.ranks.local_rank)
            torch.cuda.set_device(self.device)
        elif chosen.type == "cpu":
            self.device = chosen
        else:
            raise InputError(f"--device {device} has no torch.distributed backend; use cuda (NCCL) or cpu (gloo)")
        if not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            # A rank that evaluates or saves makes the others wait at the next collective; a
            # long final evaluation must not time the job out.
            dist.init_process_group(backend, timeout=timedelta(hours=2))
            self._owns_group = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        """Refuse a global batch the ranks cannot split evenly (before anything is built)."""
        if batch_size % self.world_size:
            raise InputError(f"batch_size={batch_size} does not split over {self.world_size} ranks; batch_size is "
                             f"the global batch, so pass a multiple of {self.world_size}")

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's rows of each global-batch tensor (all of them with one process)."""
        if not self.enabled:
            return tensors
        out = []
        for tensor in tensors:
            rows = tensor.shape[0] // self.world_size
            out.append(tensor[self.rank * rows : (self.rank + 1) * rows])
        return tuple(out)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel (itself with one process).

        Batch norm becomes SyncBatchNorm on GPUs (statistics over the global batch, as one
        process computes them); on CPU torch has no SyncBatchNorm, so each rank normalises
        its own rows and the run is no longer the one-process run: said once.
        """
        if not self.enabled:
            return module
        if _has_batch_norm(module):
            if self.device.type == "cuda":
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            elif self.is_main:
                log.warning(f"{type(module).__name__} has batch norm: on CPU each rank normalises its own rows "
                            f"(1/{self.world_size} of the batch), as SyncBatchNorm needs CUDA")
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # torch warns when a gradient's strides differ from its bucket's only in a size-1 dimension
        # (a 1-channel conv, a 1-output head): the same layout, nothing to fix.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        # Gradients as views into DDP's buckets: no copy, and no stride warning for 1-channel convs.
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, gradient_as_bucket_view=True)

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on any (a stop request seen by one rank stops all)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over the ranks (for logged losses)."""
        if not self.enabled:
            return tensor
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor / self.world_size

    def broadcast_text(self, text: str) -> str:
        """Rank 0's ``text`` on every rank (the run directory rank 0 named), without pickling."""
        if not self.enabled:
            return text
        data = torch.tensor(list(text.encode()), dtype=torch.uint8, device=self.device)
        size = torch.tensor([data.numel()], device=self.device)
        dist.broadcast(size, src=0)
        if not self.is_main:
            data = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        dist.broadcast(data, src=0)
        return bytes(data.tolist()).decode()

    @contextlib.contextmanager
    def rank_randomness(self, seed: int) -> Iterator[None]:
        """Randomness inside the block (dropout) differs per rank; the shared stream is left as it was.

        The block draws from ``seed`` + rank (the caller passes a seed per step, so the draws
        are reproducible and resume with the run); the shared stream is not touched, so the
        explicit draws stay those of one process. With one process this does nothing.
        """
        if not self.enabled:
            yield
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(seed + self.rank)
            yield

    def close(self) -> None:
        """Leave the job together: no rank tears the group down while another may still use it.

        The last collective's work is kept alive to the end of the process (``_FINAL_WORK``).
        Released right after ``wait()``, its last holder would be the gloo worker thread that ran
        it, which frees it a moment later; the work holds Python objects (torch's thread state),
        and when the process had already begun to exit that thread could not take the GIL and
        the process aborted ("terminate called without an active exception", SIGABRT, in about
        one 2-rank run in 15 on a loaded machine; the core dump's stack shows the worker in
        ``~AsyncBarrierWork``). DDP keeps the group, and so its threads, alive to the end anyway.
        """
        if self._owns_group and dist.is_initialized():
            work = dist.barrier(async_op=True)
            work.wait()
            _FINAL_WORK.append(work)
            dist.destroy_process_group()
            self._owns_group = False
