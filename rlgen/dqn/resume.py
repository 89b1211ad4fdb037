"""Reading DQN checkpoints safely, and putting a run back exactly where its checkpoint left it.

``read_checkpoint`` checks a header field by field, and the network its config
describes against the stored tensor shapes, before anything is built.
``ResumePoint.find`` decides, before any step, what a resume will load and
where it will write; ``restore_run`` applies it to the freshly built run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen.config import from_dict, to_dict
from rlgen.dqn.config import RESUMABLE_FIELDS, DQNConfig
from rlgen.dqn.learning import learning_starts
from rlgen.dqn.replay_io import replay_token
from rlgen.errors import CheckpointError, RlgenError
from rlgen.training import Checkpoint, load_checkpoint, resume_location
from rlgen.training.checkpoint import check_module_shapes, checkpoint_info

_ENV_ID = re.compile(r"^[A-Za-z0-9_\-/.]+$")  # no ':' (gymnasium would import the module named before it)


@dataclass
class DQNHeader:
    """What a DQN checkpoint's header says, checked."""

    config: DQNConfig
    obs_space: gym.spaces.Box
    num_actions: int
    meta: dict[str, Any]


def _field(meta: dict, path: Path, name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = meta.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CheckpointError(f"checkpoint {path}: header field {name!r} is {value!r}, expected {what}; "
                              "the file was not written by `rlgen train-dqn` or was altered")
    return value


def config_classes() -> dict[str, type]:
    """The Q-learning algorithms whose checkpoints hold a ``q_net`` that eval, enjoy and export read."""
    from rlgen.pqn.config import PQNConfig

    return {"dqn": DQNConfig, "pqn": PQNConfig}


def algo_of(config) -> str:
    return next(name for name, cls in config_classes().items() if isinstance(config, cls))


def read_header(path: str | Path) -> DQNHeader:
    """Check a DQN / PQN checkpoint's header and that its network fits the stored tensors (nothing is built)."""
    from rlgen.dqn.networks import build_network

    path = Path(path)
    meta = checkpoint_info(path)["meta"]
    config_cls = config_classes().get(meta.get("algo"))
    if config_cls is None:
        raise CheckpointError(f"{path} is a {meta.get('algo')!r} checkpoint, not a DQN one")
    raw = _field(meta, path, "config", dict, "a mapping of DQNConfig fields")
    env_id = raw.get("env_id")
    if not isinstance(env_id, str) or not _ENV_ID.match(env_id):
        raise CheckpointError(f"checkpoint {path}: env_id {env_id!r} is not an environment id rlgen makes "
                              "(letters, digits, '-', '_', '/', '.'; no ':')")
    try:
        config = from_dict(config_cls, raw)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: its config is invalid ({exc})") from None
    shape = _field(meta, path, "obs_shape", list, "a list of positive ints")
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise CheckpointError(f"checkpoint {path}: header field 'obs_shape' is {shape!r}, expected a list of positive ints")
    dtype_name = _field(meta, path, "obs_dtype", str, "a numpy dtype name such as 'float32'")
    if dtype_name not in ("float32", "float64", "uint8", "int8", "int32", "int64", "bool"):
        raise CheckpointError(f"checkpoint {path}: header field 'obs_dtype' is {dtype_name!r}, "
                              "expected one of float32, float64, uint8, int8, int32, int64, bool")
    num_actions = _field(meta, path, "num_actions", int, "a positive int")
    if num_actions < 1:
        raise CheckpointError(f"checkpoint {path}: header field 'num_actions' is {num_actions}, expected >= 1")
    _field(meta, path, "step", int, "an int")
    obs_space = gym.spaces.Box(0, 1, shape=tuple(shape), dtype=np.dtype(dtype_name))
    check_module_shapes(path, "q_net", lambda: build_network(config, obs_space, num_actions))
    return DQNHeader(config, obs_space, num_actions, meta)


@dataclass
class ResumePoint:
    """What a resume loads and where it writes, decided before any step.

    Attributes:
        file: the checkpoint.
        logdir, run_name: the run directory the resumed run writes into (its own).
        replay: the replay file saved with this checkpoint, None if there is none to load.
        warnings: what the user should know (not exact, a new run directory).
    """

    file: Path
    logdir: Path
    run_name: str | None
    header: DQNHeader
    replay: Path | None
    exact_envs: bool
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def find(cls, resume: str | Path, config: DQNConfig, logdir: str | Path) -> ResumePoint:
        from rlgen.envs.resumable import EXACT_FAMILIES
        from rlgen.envs.specs import get_spec

        file, run_dir = resume_location(resume)
        header = read_header(file)
        if algo_of(header.config) != algo_of(config):
            raise CheckpointError(f"{file} is a {algo_of(header.config)} run; resume it with "
                                  f"`rlgen train-{algo_of(header.config)} {header.config.env_id} --resume {run_dir or file}`")
        for name, kind, what in (("lr_schedule", dict, "a mapping (the LR schedule's state)"),
                                 ("update_step", int, "an int"), ("replay_rng", dict, "a numpy generator state")):
            _field(header.meta, file, name, kind, what)
        check_resume_config(header.config, config, file)
        done = header.meta["step"]
        if config.total_timesteps < done:
            raise RlgenError(f"--total-steps {config.total_timesteps:,} is below the {done:,} steps this run has "
                             f"done ({file}); pass a larger budget to train on, or evaluate it with `rlgen eval`")
        warnings = []
        if run_dir is None:
            warnings.append(f"{file} is not inside its own run directory; the resumed run writes into a new "
                            f"run directory under {logdir} and starts with an empty replay")
        replay = None
        saved = header.meta.get("replay")
        if run_dir is not None and isinstance(saved, dict) and isinstance(saved.get("file"), str):
            candidate = run_dir / Path(saved["file"]).name
            if candidate.is_file():
                if replay_token(candidate) != saved.get("token"):
                    raise CheckpointError(f"replay file {candidate} does not belong to checkpoint {file}; "
                                          f"delete it to resume with an empty replay (not exact)")
                replay = candidate
        if replay is None and getattr(config, "save_replay", False):
            warnings.append("no replay was kept with this checkpoint (only the newest keeps one): the replay "
                            "refills for learning_starts steps before updates resume, so the run is not exact")
        exact_envs = get_spec(config.env_id).family in EXACT_FAMILIES and isinstance(header.meta.get("envs"), dict)
        if not exact_envs:
            warnings.append(f"{config.env_id}'s environments cannot be saved exactly (rlgen restores "
                            f"{', '.join(EXACT_FAMILIES)}): they start new episodes, so the resumed run is not exact")
        if run_dir is None:
            return cls(file, Path(logdir), None, header, None, exact_envs, warnings)
        return cls(file, run_dir.parent, run_dir.name, header, replay, exact_envs, warnings)


def check_resume_config(saved, given, file: Path) -> None:
    """A resumed run keeps its config; only the budget and reporting fields may change."""
    from rlgen.pqn.config import RESUMABLE_FIELDS as PQN_RESUMABLE

    resumable = RESUMABLE_FIELDS if isinstance(saved, DQNConfig) else PQN_RESUMABLE
    a, b = to_dict(saved), to_dict(given)
    changed = sorted(k for k in a if a[k] != b.get(k) and k not in resumable)
    if changed:
        raise RlgenError(
            f"a resumed run keeps its config, but {', '.join(f'{k}={b.get(k)!r} (run: {a[k]!r})' for k in changed)} "
            f"differ from {file}; on resume only {', '.join(resumable)} may change"
        )


def restore_run(point: ResumePoint, device: torch.device, *, q_net, target_net, optimizer, lr_schedule, rng,
                run_rng, envs, actor, buffer, report, best, memory_rows) -> tuple[np.ndarray, int, int, int]:
    """Load every part of the run from ``point``; returns (obs, global_step, update_step, learn_after).

    PQN passes no target network, replay or keep_best snapshot (None).
    """
    ckpt: Checkpoint = load_checkpoint(point.file, map_location=device)
    meta = ckpt.meta
    ckpt.load_module("q_net", q_net)
    if target_net is not None:
        ckpt.load_module("target_net", target_net)
    ckpt.load_optimizer("optimizer", optimizer)
    lr_schedule.load_state_dict(meta["lr_schedule"])
    global_step, update_step = int(meta["step"]), int(meta["update_step"])
    rng.bit_generator.state = meta["replay_rng"]
    extra = ckpt.extra
    if "run_rng" in meta:
        run_rng.load_state_dict(meta["run_rng"], extra)
    else:  # saved before runs owned their streams
        ckpt.restore_rng()
    if "report" in meta:
        report.load_state_dict(meta["report"])
    if best is not None and meta.get("best") is not None:
        best.load_state_dict(meta["best"], extra)
    learn_after = 0
    if buffer is None:
        pass
    elif point.replay is not None:
        buffer.load(point.replay)
        learn_after = learning_starts(point.header.config, buffer)
    else:
        learn_after = global_step + learning_starts(point.header.config, buffer)  # refill an empty replay first
    if point.exact_envs:
        obs = envs.load_state_dict(meta["envs"])
        actor.load_state_dict(meta["actor"], extra)
        if buffer is not None and point.replay is None:
            buffer.start(obs, memory_rows())
    else:
        obs, _ = envs.reset(seed=point.header.config.seed + global_step)
        actor.reset()
        if buffer is not None and point.replay is not None:
            buffer.restart(obs, memory_rows())
        elif buffer is not None:
            buffer.start(obs, memory_rows())
    return obs, global_step, update_step, learn_after

