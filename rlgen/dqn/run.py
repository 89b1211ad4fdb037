"""One Q-learning run's parts (DQN or PQN), built and checked before its first step, and its checkpoint.

``build_run`` makes everything a run owns (its random streams, environments,
Q-network, optimizer and LR schedule, actor, logger and checkpoints; for DQN also
the target network, replay, loss and keep_best snapshot), restores them from a
resume point, and says where the loop starts; ``save_run`` writes the
checkpoint. The loops of one seed (``rlgen.dqn.train``, ``rlgen.pqn.train``) and
of many seeds in one batch (``rlgen.dqn.seeds``, ``rlgen.pqn.seeds``) all start
from these, so a seed trained inside a batch saves exactly what it would alone.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlgen.config import to_dict
from rlgen.dqn.actors import make_actor
from rlgen.dqn.config import DQNConfig
from rlgen.dqn.evaluations import BackgroundEvaluations, InlineEvaluations
from rlgen.dqn.learning import (
    BestSnapshot,
    check_network_fits,
    learning_starts,
    make_loss,
    make_optimization,
    make_replay,
    stores_state,
)
from rlgen.dqn.networks import build_network
from rlgen.dqn.reporting import TrainingReport
from rlgen.dqn.resume import ResumePoint, algo_of, restore_run
from rlgen.envs import get_spec, make_vector_env
from rlgen.envs.resumable import ResumableVectorEnv
from rlgen.pqn.config import PQNConfig
from rlgen.training import (
    Precision,
    ProgressBar,
    RunCheckpoints,
    RunLogger,
    RunRNG,
    maybe_compile,
)
from rlgen.training.transfer import load_transfer, observation_inputs, optimizer_params

log = logging.getLogger(__name__)


@dataclass
class QRun:
    """Everything one DQN or PQN run owns; the loop keeps its position (obs, steps) itself.
    PQN has no target network, replay, loss object or keep_best snapshot (None)."""

    algo: str  # "dqn" or "pqn"
    config: DQNConfig | PQNConfig
    device: torch.device
    run_rng: RunRNG  # torch / numpy / python streams: network init, dropout
    rng: np.random.Generator  # exploration and replay sampling
    envs: ResumableVectorEnv
    obs_space: Any
    num_actions: int
    q_net: torch.nn.Module
    target_net: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    lr_schedule: Any
    steps_per_phase: int  # DQN: gradient steps per training phase; PQN: per rollout
    precision: Precision
    q_compiled: torch.nn.Module
    actor: Any
    buffer: Any | None
    memory_rows: Callable[[], np.ndarray | None]
    td_loss: Any | None
    best: BestSnapshot | None
    logger: RunLogger
    checkpoints: RunCheckpoints
    bar: ProgressBar
    report: TrainingReport
    # Evaluations during training, inline or in a worker process (rlgen.dqn.evaluations).
    evaluations: InlineEvaluations | BackgroundEvaluations = field(default_factory=InlineEvaluations)
    last_eval: tuple[int, float] | None = None  # (global_step, mean) of the latest evaluation taken


@dataclass
class StartPoint:
    obs: np.ndarray
    global_step: int
    update_step: int
    learn_after: int  # environment steps before the first update


def build_run(config: DQNConfig | PQNConfig, device: torch.device, *, logdir: str | Path,
              resume: str | Path | None, run_name: str | None, progress: bool) -> tuple[QRun, StartPoint]:
    """Build (and, given ``resume``, restore) the run ``config`` describes; returns it and where its loop starts."""
    algo = algo_of(config)
    run_rng = RunRNG(config.seed)
    rng = np.random.default_rng(config.seed)
    point = ResumePoint.find(resume, config, logdir) if resume is not None else None
    with run_rng.active():
        spec = get_spec(config.env_id)
        envs = ResumableVectorEnv(make_vector_env(config.env_id, config.num_envs, seed=config.seed), config.env_id)
        obs_space, num_actions = envs.single_observation_space, int(envs.single_action_space.n)

        check_network_fits(config, obs_space, num_actions)
        q_net = build_network(config, obs_space, num_actions).to(device)
        if config.transfer.init_from and point is None:  # a resumed run has the weights in its checkpoint
            inputs = observation_inputs(str(obs_space.dtype), tuple(obs_space.shape), config.backbone.kind)
            load_transfer(config.transfer, {"q_net": q_net}, inputs)
        params = optimizer_params(config.transfer, "q_net", q_net, config.learning_rate)
        target_net = buffer = td_loss = best = None
        if algo == "dqn":
            target_net = copy.deepcopy(q_net)
            target_net.requires_grad_(False)
            optimizer, lr_schedule, steps_per_phase = make_optimization(config, params)
        else:
            from rlgen.pqn.train import make_pqn_optimization

            optimizer, lr_schedule, steps_per_phase = make_pqn_optimization(config, params)
        precision = Precision(config.precision, device)
        q_compiled = maybe_compile(q_net, config.compile)
        actor = make_actor(q_net, config.num_envs, num_actions, device, forward=q_compiled)
        memory_rows = lambda: None
        if algo == "dqn":
            buffer = make_replay(config, obs_space, spec.frame_stack, q_net, device)
            memory_rows = actor.packed_state if stores_state(config, q_net) else memory_rows
            td_loss = make_loss(config)
            best = BestSnapshot(config.keep_best_window) if config.keep_best else None

    if point is not None:  # a resumed run writes only into its own run directory
        logdir, run_name = point.logdir, point.run_name
    logger = RunLogger(logdir, config.env_id, algo, config.seed, to_dict(config), run_name=run_name)
    checkpoints = RunCheckpoints(logger.run_dir, config.keep_checkpoints,
                                 run_id=point.header.meta.get("run_id") if point and point.run_name else None)
    bar = ProgressBar(config.total_timesteps, desc=f"{algo} {config.env_id}", unit="step", disable=not progress)
    report = TrainingReport(logger, bar, config.log_interval, 0, device,
                            keep_returns=max(20, getattr(config, "keep_best_window", 0)))
    run = QRun(algo, config, device, run_rng, rng, envs, obs_space, num_actions, q_net, target_net, optimizer,
               lr_schedule, steps_per_phase, precision, q_compiled, actor, buffer, memory_rows, td_loss, best,
               logger, checkpoints, bar, report)

    with run_rng.active():
        if point is None:
            obs, _ = envs.reset(seed=config.seed)
            if buffer is None:
                return run, StartPoint(obs, 0, 0, 0)
            buffer.start(obs, memory_rows())
            return run, StartPoint(obs, 0, 0, learning_starts(config, buffer))
        restored = restore_run(point, device, q_net=q_net, target_net=target_net, optimizer=optimizer,
                               lr_schedule=lr_schedule, rng=rng, run_rng=run_rng, envs=envs, actor=actor,
                               buffer=buffer, report=report, best=best, memory_rows=memory_rows)
        for warning in point.warnings:
            log.warning(warning)
        return run, StartPoint(*restored)


def save_run(run: QRun, global_step: int, update_step: int, final: bool = False) -> Path:
    """Write the run's checkpoint at ``global_step`` (and its replay with it, as one unit), after every
    evaluation submitted before it has been taken (keep_best's snapshot is in the checkpoint)."""
    run.evaluations.drain()
    config = run.config
    run_meta, run_tensors = run.run_rng.state_dict()
    actor_meta, actor_tensors = run.actor.state_dict()
    best_meta, best_tensors = run.best.state_dict() if run.best is not None else (None, {})
    modules = {"q_net": run.q_net} if run.target_net is None else {"q_net": run.q_net, "target_net": run.target_net}
    return run.checkpoints.save(
        global_step,
        modules=modules,
        optimizers={"optimizer": run.optimizer},
        extra_tensors={**run_tensors, **actor_tensors, **best_tensors},
        companion=run.buffer.save if run.buffer is not None and config.save_replay else None,
        meta={
            "algo": run.algo, "config": to_dict(config), "step": global_step, "final": final,
            "update_step": update_step, "lr_schedule": run.lr_schedule.state_dict(),
            "num_actions": run.num_actions, "obs_shape": list(run.obs_space.shape),
            "obs_dtype": str(run.obs_space.dtype), "replay_rng": run.rng.bit_generator.state, "run_rng": run_meta,
            "actor": actor_meta, "envs": run.envs.state_dict(), "report": run.report.state_dict(), "best": best_meta,
        },
    )
