"""The DQN training loop, written out top to bottom (CleanRL style), for every Q-network.

Feed-forward and memory (LSTM / GRU / transformer, R2D2-style) agents run the
same loop; they differ only in the parts they are given (acme's roles):

- the actor (``rlgen.dqn.actors``): stateless, or carrying each copy's memory;
- the replay (``rlgen.dqn.learning.make_replay``): transitions, or chunks with burn-in;
- the loss (``rlgen.dqn.losses``): per transition, or masked per chunk step.

Variants (double, dueling, n-step, prioritized, Polyak targets, LR schedules)
are config switches. The run owns every source of randomness it uses (its
torch / numpy / python streams, the exploration and replay generator, the
environments' own) and saves them, the environments' place in their episodes
and the replay in each checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch

from rlgen.config import to_dict
from rlgen.dqn.actors import make_actor
from rlgen.dqn.config import DQNConfig
from rlgen.dqn.evaluate import evaluate_policy
from rlgen.dqn.learning import (
    BestSnapshot,
    check_network_fits,
    learning_starts,
    make_loss,
    make_optimization,
    make_replay,
    stores_state,
    update_target,
)
from rlgen.dqn.networks import build_network
from rlgen.dqn.reporting import TrainingReport
from rlgen.dqn.resume import ResumePoint, restore_run
from rlgen.dqn.schedules import epsilon_at
from rlgen.envs import get_spec, make_vector_env
from rlgen.envs.resumable import ResumableVectorEnv
from rlgen.training import (
    GracefulInterrupt,
    Precision,
    ProgressBar,
    RunCheckpoints,
    RunLogger,
    RunRNG,
    TrainResult,
    gradient_step,
    maybe_compile,
    resolve_device,
    set_deterministic,
    torch_threads,
)

log = logging.getLogger(__name__)


def train(
    config: DQNConfig,
    *,
    device: str = "auto",
    logdir: str | Path = "runs",
    resume: str | Path | None = None,
    progress: bool = True,
    run_name: str | None = None,
) -> TrainResult:
    """Train a DQN agent as ``config`` says; returns where the run and its checkpoint are.

    Ctrl-C or SIGTERM stops after the current step, saves and returns with
    ``interrupted=True``; ``resume`` (a run directory or checkpoint) continues a run.
    """
    return run_to_end(train_steps, config, device=device, logdir=logdir, resume=resume, progress=progress,
                      run_name=run_name)


def run_to_end(steps_of, config, *, device: str, **kwargs) -> TrainResult:
    """Drive a loop generator (``train_steps`` of DQN or PQN) to its end, with the run's CPU threads and
    Ctrl-C / SIGTERM handling; returns its ``TrainResult``."""
    torch_device = resolve_device(device)
    with torch_threads(cpu_threads(config, torch_device)), GracefulInterrupt() as interrupt:
        steps = steps_of(config, torch_device, interrupt=interrupt, **kwargs)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value


def cpu_threads(config: DQNConfig, device: torch.device) -> int | None:
    """Torch CPU threads for this run: 1 for MLPs (tiny matmuls only contend), else the config's or torch's."""
    if device.type != "cpu":
        return None
    return config.cpu_threads or (1 if config.backbone.kind == "mlp" else None)


def train_steps(
    config: DQNConfig,
    device: torch.device,
    *,
    logdir: str | Path = "runs",
    resume: str | Path | None = None,
    progress: bool = False,
    run_name: str | None = None,
    interrupt: GracefulInterrupt | None = None,
) -> Generator[int, None, TrainResult]:
    """The training loop as a generator: each ``next()`` takes one vector step and yields ``global_step``.

    ``train`` drains it; stepping several runs alternately in one process (many
    seeds) gives each exactly what it gives alone. Returns the ``TrainResult``.
    """
    start_time = time.perf_counter()
    set_deterministic(config.deterministic)
    run_rng = RunRNG(config.seed)  # torch / numpy / python streams: network init, dropout
    rng = np.random.default_rng(config.seed)  # exploration and replay sampling
    point = ResumePoint.find(resume, config, logdir) if resume is not None else None
    with run_rng.active():
        spec = get_spec(config.env_id)
        envs = ResumableVectorEnv(make_vector_env(config.env_id, config.num_envs, seed=config.seed), config.env_id)
        obs_space, num_actions = envs.single_observation_space, int(envs.single_action_space.n)

        check_network_fits(config, obs_space, num_actions)
        q_net = build_network(config, obs_space, num_actions).to(device)
        target_net = copy.deepcopy(q_net)
        target_net.requires_grad_(False)
        optimizer, lr_schedule, steps_per_phase = make_optimization(config, q_net)
        # Listed once: walking the module tree on every update costs more than a small update's Adam step.
        online_params, target_params = list(q_net.parameters()), list(target_net.parameters())
        precision = Precision(config.precision, device)
        q_compiled = maybe_compile(q_net, config.compile)
        actor = make_actor(q_net, config.num_envs, num_actions, device, forward=q_compiled)
        buffer = make_replay(config, obs_space, spec.frame_stack, q_net, device)
        memory_rows = actor.packed_state if stores_state(config, q_net) else lambda: None
        td_loss = make_loss(config)
        best = BestSnapshot(config.keep_best_window) if config.keep_best else None

    if point is not None:  # a resumed run writes only into its own run directory
        logdir, run_name = point.logdir, point.run_name
    logger = RunLogger(logdir, config.env_id, "dqn", config.seed, to_dict(config), run_name=run_name)
    checkpoints = RunCheckpoints(logger.run_dir, config.keep_checkpoints,
                                 run_id=point.header.meta.get("run_id") if point and point.run_name else None)
    bar = ProgressBar(config.total_timesteps, desc=f"dqn {config.env_id}", unit="step", disable=not progress)
    report = TrainingReport(logger, bar, config.log_interval, 0, device,
                            keep_returns=max(20, config.keep_best_window))
    global_step, update_step = 0, 0

    def save(final: bool = False) -> Path:
        run_meta, run_tensors = run_rng.state_dict()
        actor_meta, actor_tensors = actor.state_dict()
        best_meta, best_tensors = best.state_dict() if best is not None else (None, {})
        return checkpoints.save(
            global_step,
            modules={"q_net": q_net, "target_net": target_net},
            optimizers={"optimizer": optimizer},
            extra_tensors={**run_tensors, **actor_tensors, **best_tensors},
            companion=buffer.save if config.save_replay else None,
            meta={
                "algo": "dqn", "config": to_dict(config), "step": global_step, "final": final,
                "update_step": update_step, "lr_schedule": lr_schedule.state_dict(),
                "num_actions": num_actions, "obs_shape": list(obs_space.shape), "obs_dtype": str(obs_space.dtype),
                "replay_rng": rng.bit_generator.state, "run_rng": run_meta, "actor": actor_meta,
                "envs": envs.state_dict(), "report": report.state_dict(), "best": best_meta,
            },
        )

    with run_rng.active():
        if point is None:
            obs, _ = envs.reset(seed=config.seed)
            buffer.start(obs, memory_rows())
            learn_after = learning_starts(config, buffer)
        else:
            restored = restore_run(point, device, q_net=q_net, target_net=target_net, optimizer=optimizer,
                                   lr_schedule=lr_schedule, rng=rng, run_rng=run_rng, envs=envs, actor=actor,
                                   buffer=buffer, report=report, best=best, memory_rows=memory_rows)
            obs, global_step, update_step, learn_after = restored
            for warning in point.warnings:
                log.warning(warning)
    next_eval = (global_step // config.eval_freq + 1) * config.eval_freq if config.eval_freq else None
    next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq if config.checkpoint_freq else None
    vector_step = global_step // config.num_envs
    target_every = max(config.target_update_interval // config.num_envs, 1)
    report.reset_clock(global_step)
    bar.update(global_step)
    interrupted = False

    while global_step < config.total_timesteps:
        with run_rng.active():
            # -- act ---------------------------------------------------------------------------
            epsilon = epsilon_at(config, global_step)
            actions = actor.act(obs, epsilon, rng)
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            buffer.add(actions, rewards, terminations, truncations, next_obs, actor.autoreset, memory_rows())
            actor.observe(terminations, truncations)
            obs = next_obs
            global_step += config.num_envs
            vector_step += 1

            if report.episodes(infos, global_step) and best is not None:
                best.observe(report.recent_returns, q_net, global_step)

            # -- learn -------------------------------------------------------------------------
            if global_step > learn_after and vector_step % config.train_freq == 0:
                q_net.train()
                for _ in range(steps_per_phase):
                    beta = config.per_beta0 + (1.0 - config.per_beta0) * min(1.0, global_step / config.total_timesteps)
                    batch = buffer.sample(config.batch_size, rng, beta=beta)
                    with precision.autocast():
                        out = td_loss(q_compiled, target_net, batch)
                    gradient_step(
                        out.loss, optimizer, online_params,
                        max_grad_norm=config.max_grad_norm or None, scaler=precision.scaler,
                    )
                    lr_schedule.step()
                    update_step += 1
                    if config.prioritized:
                        buffer.update_priorities(batch.indices, out.priorities.float().cpu().numpy())
                    report.update(out.loss, out.q_mean)
            if vector_step % target_every == 0:
                update_target(online_params, target_params, config.tau)

            # -- report ------------------------------------------------------------------------
            report.maybe_log(global_step, epsilon, optimizer.param_groups[0]["lr"])
            if next_eval is not None and global_step >= next_eval:
                next_eval += config.eval_freq
                mean, _ = evaluate_policy(q_net, config.env_id, config.eval_during_episodes,
                                          seed=config.seed + 10_000, device=device)
                logger.scalar("eval/episodic_return", mean, global_step)
            if next_ckpt is not None and global_step >= next_ckpt:
                next_ckpt += config.checkpoint_freq
                save()
            bar.update(config.num_envs)
        if interrupt is not None and interrupt.requested:
            interrupted = True
            break
        yield global_step

    bar.close()
    envs.close()
    with run_rng.active():
        if best is not None and not interrupted:
            best.finish(report.recent_returns, q_net, target_net, logger, global_step)
        checkpoint = save(final=not interrupted)  # saved before the final evaluation: it can never cost the run
        metrics = final_evaluation(logger, config, q_net, global_step, interrupted, device)
    run_rng.release()
    return TrainResult(run_dir=logger.run_dir, checkpoint=checkpoint, step=global_step, metrics=metrics,
                       interrupted=interrupted, wall_seconds=time.perf_counter() - start_time)


def final_evaluation(logger: RunLogger, config: DQNConfig, q_net: torch.nn.Module, global_step: int,
                     interrupted: bool, device: torch.device) -> dict[str, float]:
    """The final evaluation and video (skipped for an interrupted run), hparams, and closing the log."""
    metrics: dict[str, float] = {}
    if config.eval_episodes > 0 and not interrupted:
        mean, std = evaluate_policy(q_net, config.env_id, config.eval_episodes, seed=config.seed + 100_000,
                                    device=device)
        metrics = {"eval/episodic_return": mean, "eval/episodic_return_std": std}
        logger.scalar("eval/episodic_return", mean, global_step)
        logger.scalar("eval/episodic_return_std", std, global_step)
        if config.capture_video:
            from rlgen.dqn.video import record_episode

            frames, _ = record_episode(q_net, config.env_id, seed=config.seed, device=device)
            logger.video("eval/video", frames, global_step, fps=30)
    logger.hparams_final({"eval/episodic_return": metrics.get("eval/episodic_return", float("nan"))})
    logger.close()
    return metrics
