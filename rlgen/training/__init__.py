"""Shared training mechanics: device, precision, optimizers, EMA, checkpoints, logging.

Algorithms write their own loops and import these pieces from here.
"""

from rlgen.training.checkpoint import (
    Checkpoint,
    checkpoint_info,
    load_checkpoint,
    save_checkpoint,
)
from rlgen.training.device import (
    resolve_device,
    seed_everything,
    set_deterministic,
    torch_threads,
)
from rlgen.training.distributed import DataParallel, Ranks, ranks_from_env
from rlgen.training.ema import EMA
from rlgen.training.interrupt import GracefulInterrupt
from rlgen.training.logger import RunLogger, make_grid, save_image_grid
from rlgen.training.optim import (
    gradient_step,
    make_lr_schedule,
    make_optimizer,
    maybe_compile,
)
from rlgen.training.precision import Precision
from rlgen.training.progress import ProgressBar
from rlgen.training.result import TrainResult
from rlgen.training.rng import RunRNG
from rlgen.training.run_checkpoints import RunCheckpoints, resume_location

__all__ = [
    "EMA",
    "Checkpoint",
    "DataParallel",
    "GracefulInterrupt",
    "Precision",
    "ProgressBar",
    "RunCheckpoints",
    "RunLogger",
    "RunRNG",
    "Ranks",
    "TrainResult",
    "checkpoint_info",
    "gradient_step",
    "load_checkpoint",
    "make_grid",
    "make_lr_schedule",
    "make_optimizer",
    "maybe_compile",
    "ranks_from_env",
    "resolve_device",
    "resume_location",
    "save_checkpoint",
    "save_image_grid",
    "seed_everything",
    "set_deterministic",
    "torch_threads",
]
