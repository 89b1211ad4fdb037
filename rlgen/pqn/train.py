"""The PQN training loop (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning"), top to bottom.

Each iteration: an epsilon-greedy rollout of ``num_steps`` vector steps over
``num_envs`` copies; Q(lambda) targets computed backwards over it with the
network that acted (no target network: LayerNorm keeps the TD updates stable);
``update_epochs`` passes of ``num_minibatches`` minibatches over its
transitions; no replay. The run owns its random streams and its environments'
place in their episodes, saved in checkpoints written at rollout ends, so a
resume is exact. Shared mechanics come from ``rlgen.training``, the networks,
actors, evaluation and reporting from the DQN stack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rlgen.config import to_dict
from rlgen.dqn.actors import FeedForwardActor, epsilon_greedy
from rlgen.dqn.evaluate import evaluate_policy
from rlgen.dqn.learning import check_network_fits
from rlgen.dqn.networks import build_network
from rlgen.dqn.reporting import TrainingReport
from rlgen.dqn.resume import ResumePoint, restore_run
from rlgen.dqn.schedules import epsilon_at
from rlgen.dqn.train import final_evaluation, run_to_end
from rlgen.envs import make_vector_env
from rlgen.envs.resumable import ResumableVectorEnv
from rlgen.pqn.config import PQNConfig
from rlgen.pqn.returns import q_lambda_returns
from rlgen.training import (
    GracefulInterrupt,
    Precision,
    ProgressBar,
    RunCheckpoints,
    RunLogger,
    RunRNG,
    TrainResult,
    gradient_step,
    make_lr_schedule,
    make_optimizer,
    maybe_compile,
    set_deterministic,
)

log = logging.getLogger(__name__)


def train(config: PQNConfig, *, device: str = "auto", logdir: str | Path = "runs", resume: str | Path | None = None,
          progress: bool = True, run_name: str | None = None) -> TrainResult:
    """Train a PQN agent as ``config`` says (same contract as ``rlgen.dqn.train.train``)."""
    return run_to_end(train_steps, config, device=device, logdir=logdir, resume=resume, progress=progress,
                      run_name=run_name)


def train_steps(config: PQNConfig, device: torch.device, *, logdir: str | Path = "runs",
                resume: str | Path | None = None, progress: bool = False, run_name: str | None = None,
                interrupt: GracefulInterrupt | None = None) -> Generator[int, None, TrainResult]:
    """The loop as a generator: each ``next()`` runs one rollout and its updates, and yields ``global_step``."""
    start_time = time.perf_counter()
    set_deterministic(config.deterministic)
    run_rng = RunRNG(config.seed)  # network init
    rng = np.random.default_rng(config.seed)  # exploration and minibatch order
    point = ResumePoint.find(resume, config, logdir) if resume is not None else None
    n, steps = config.num_envs, config.num_steps
    rollout_size = n * steps
    with run_rng.active():
        envs = ResumableVectorEnv(make_vector_env(config.env_id, n, seed=config.seed), config.env_id)
        obs_space, num_actions = envs.single_observation_space, int(envs.single_action_space.n)
        check_network_fits(config, obs_space, num_actions)
        q_net = build_network(config, obs_space, num_actions).to(device)
        optimizer = make_optimizer(config.optimizer, q_net.parameters(), config.learning_rate, eps=config.adam_eps)
        updates_per_rollout = config.update_epochs * config.num_minibatches
        rollouts = -(-config.total_timesteps // rollout_size)  # whole rollouts: the budget rounded up
        total_updates = rollouts * updates_per_rollout
        lr_schedule = make_lr_schedule(optimizer, config.lr_schedule, total_steps=total_updates,
                                       final_factor=config.lr_final_factor)
        params = list(q_net.parameters())
        precision = Precision(config.precision, device)
        q_compiled = maybe_compile(q_net, config.compile)
        actor = FeedForwardActor(q_net, n, num_actions, device, forward=q_compiled)  # its done flags: autoreset steps

    if point is not None:  # a resumed run writes only into its own run directory
        logdir, run_name = point.logdir, point.run_name
    logger = RunLogger(logdir, config.env_id, "pqn", config.seed, to_dict(config), run_name=run_name)
    checkpoints = RunCheckpoints(logger.run_dir, config.keep_checkpoints,
                                 run_id=point.header.meta.get("run_id") if point and point.run_name else None)
    bar = ProgressBar(config.total_timesteps, desc=f"pqn {config.env_id}", unit="step", disable=not progress)
    report = TrainingReport(logger, bar, config.log_interval, 0, device)
    global_step, update_step = 0, 0

    def save(final: bool = False) -> Path:
        run_meta, run_tensors = run_rng.state_dict()
        actor_meta, _ = actor.state_dict()
        return checkpoints.save(
            global_step, modules={"q_net": q_net}, optimizers={"optimizer": optimizer}, extra_tensors=run_tensors,
            meta={
                "algo": "pqn", "config": to_dict(config), "step": global_step, "final": final,
                "update_step": update_step, "lr_schedule": lr_schedule.state_dict(),
                "num_actions": num_actions, "obs_shape": list(obs_space.shape), "obs_dtype": str(obs_space.dtype),
                "replay_rng": rng.bit_generator.state, "run_rng": run_meta, "actor": actor_meta,
                "envs": envs.state_dict(), "report": report.state_dict(),
            },
        )

    with run_rng.active():
        if point is None:
            obs, _ = envs.reset(seed=config.seed)
        else:
            obs, global_step, update_step, _ = restore_run(
                point, device, q_net=q_net, target_net=None, optimizer=optimizer, lr_schedule=lr_schedule, rng=rng,
                run_rng=run_rng, envs=envs, actor=actor, buffer=None, report=report, best=None, memory_rows=None)
            for warning in point.warnings:
                log.warning(warning)
    # Rollout storage, (T, N, ...) on the device.
    obs_buf = torch.zeros((steps, n, *obs_space.shape), dtype=torch.as_tensor(obs).dtype, device=device)
    actions_buf = torch.zeros((steps, n), dtype=torch.long, device=device)
    rewards_buf = torch.zeros((steps, n), device=device)
    terms_buf = torch.zeros((steps, n), dtype=torch.bool, device=device)
    truncs_buf = torch.zeros((steps, n), dtype=torch.bool, device=device)
    valid_buf = torch.zeros((steps, n), dtype=torch.bool, device=device)
    max_q_buf = torch.zeros((steps + 1, n), device=device)  # max_a Q(s_t, a) of every observation acted on
    next_eval = (global_step // config.eval_freq + 1) * config.eval_freq if config.eval_freq else None
    next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq if config.checkpoint_freq else None
    report.reset_clock(global_step)
    bar.update(global_step)
    interrupted = False

    while global_step < config.total_timesteps:
        with run_rng.active():
            # -- rollout: T epsilon-greedy vector steps -----------------------------------------
            q_net.eval()
            for t in range(steps):
                epsilon = epsilon_at(config, global_step)
                obs_t = torch.as_tensor(obs, device=device)
                with torch.inference_mode():
                    q = q_compiled(obs_t).float()  # (N, A)
                max_q_buf[t] = q.max(dim=1).values
                actions = epsilon_greedy(q.argmax(dim=1).cpu().numpy(), epsilon, rng, num_actions)
                next_obs, rewards, terminations, truncations, infos = envs.step(actions)
                obs_buf[t] = obs_t
                actions_buf[t] = torch.as_tensor(actions, device=device)
                rewards_buf[t] = torch.as_tensor(rewards, device=device)
                terms_buf[t] = torch.as_tensor(terminations, device=device)
                truncs_buf[t] = torch.as_tensor(truncations, device=device)
                valid_buf[t] = torch.as_tensor(~actor.autoreset, device=device)  # an autoreset step is no transition
                actor.observe(terminations, truncations)
                obs = next_obs
                global_step += n
                report.episodes(infos, global_step)
            with torch.inference_mode():
                max_q_buf[steps] = q_compiled(torch.as_tensor(obs, device=device)).float().max(dim=1).values

            # -- Q(lambda) targets, backwards over the rollout --------------------------------------
            returns = q_lambda_returns(rewards_buf, terms_buf, truncs_buf, max_q_buf[1:], config.gamma,
                                       config.q_lambda)  # (T, N)

            # -- learn: epochs of minibatches over the rollout's transitions -------------------------
            q_net.train()
            flat_obs, flat_actions = obs_buf.flatten(0, 1), actions_buf.flatten()
            flat_returns, flat_valid = returns.flatten(), valid_buf.flatten().float()
            size = rollout_size // config.num_minibatches
            for _ in range(config.update_epochs):
                order = torch.as_tensor(rng.permutation(rollout_size), device=device)
                for start in range(0, size * config.num_minibatches, size):
                    idx = order[start:start + size]
                    with precision.autocast():
                        q_taken = q_compiled(flat_obs[idx]).float().gather(1, flat_actions[idx, None]).squeeze(1)
                    if config.loss == "mse":
                        per_sample = 0.5 * (q_taken - flat_returns[idx]) ** 2
                    else:
                        per_sample = F.smooth_l1_loss(q_taken, flat_returns[idx], reduction="none")
                    mask = flat_valid[idx]
                    loss = (per_sample * mask).sum() / mask.sum().clamp(min=1.0)
                    gradient_step(loss, optimizer, params, max_grad_norm=config.max_grad_norm or None,
                                  scaler=precision.scaler)
                    lr_schedule.step()
                    update_step += 1
                    report.update(loss, (q_taken.detach() * mask).sum() / mask.sum().clamp(min=1.0))

            # -- report -----------------------------------------------------------------------------
            report.maybe_log(global_step, epsilon, optimizer.param_groups[0]["lr"])
            if next_eval is not None and global_step >= next_eval:
                next_eval = (global_step // config.eval_freq + 1) * config.eval_freq
                mean, _ = evaluate_policy(q_net, config.env_id, config.eval_during_episodes,
                                          seed=config.seed + 10_000, device=device)
                logger.scalar("eval/episodic_return", mean, global_step)
            if next_ckpt is not None and global_step >= next_ckpt:
                next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq
                save()
            bar.update(rollout_size)
        if interrupt is not None and interrupt.requested:
            interrupted = True
            break
        yield global_step

    bar.close()
    envs.close()
    with run_rng.active():
        checkpoint = save(final=not interrupted)  # saved before the final evaluation: it can never cost the run
        metrics = final_evaluation(logger, config, q_net, global_step, interrupted, device)
    run_rng.release()
    return TrainResult(run_dir=logger.run_dir, checkpoint=checkpoint, step=global_step, metrics=metrics,
                       interrupted=interrupted, wall_seconds=time.perf_counter() - start_time)

