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

import time
from collections.abc import Generator
from pathlib import Path

import torch
import torch.nn.functional as F

from rlgen.dqn.actors import epsilon_greedy
from rlgen.dqn.schedules import epsilon_at
from rlgen.dqn.evaluations import make_evaluations
from rlgen.dqn.run import build_run, save_run
from rlgen.dqn.train import finish_run, run_to_end
from rlgen.pqn.config import PQNConfig
from rlgen.pqn.returns import q_lambda_returns
from rlgen.training import (
    GracefulInterrupt,
    TrainResult,
    gradient_step,
    make_lr_schedule,
    make_optimizer,
    set_deterministic,
)

def train(config: PQNConfig, *, device: str = "auto", logdir: str | Path = "runs", resume: str | Path | None = None,
          progress: bool = True, run_name: str | None = None, on_eval=None) -> TrainResult:
    """Train a PQN agent as ``config`` says (same contract as ``rlgen.dqn.train.train``)."""
    return run_to_end(train_steps, config, device=device, logdir=logdir, resume=resume, progress=progress,
                      run_name=run_name, on_eval=on_eval)


def train_steps(config: PQNConfig, device: torch.device, *, logdir: str | Path = "runs",
                resume: str | Path | None = None, progress: bool = False, run_name: str | None = None,
                interrupt: GracefulInterrupt | None = None, on_eval=None) -> Generator[int, None, TrainResult]:
    """The loop as a generator: each ``next()`` runs one rollout and its updates, and yields ``global_step``."""
    start_time = time.perf_counter()
    set_deterministic(config.deterministic)
    run, start = build_run(config, device, logdir=logdir, resume=resume, run_name=run_name, progress=progress)
    run.evaluations = make_evaluations(config, device, on_eval)
    q_net, q_compiled, actor, envs, rng, report = run.q_net, run.q_compiled, run.actor, run.envs, run.rng, run.report
    optimizer, lr_schedule, precision, num_actions = run.optimizer, run.lr_schedule, run.precision, run.num_actions
    params = list(q_net.parameters())
    obs, global_step, update_step = start.obs, start.global_step, start.update_step
    n, steps = config.num_envs, config.num_steps
    rollout_size = n * steps
    # Rollout storage, (T, N, ...) on the device.
    obs_buf = torch.zeros((steps, n, *run.obs_space.shape), dtype=torch.as_tensor(obs).dtype, device=device)
    actions_buf = torch.zeros((steps, n), dtype=torch.long, device=device)
    rewards_buf = torch.zeros((steps, n), device=device)
    terms_buf = torch.zeros((steps, n), dtype=torch.bool, device=device)
    truncs_buf = torch.zeros((steps, n), dtype=torch.bool, device=device)
    valid_buf = torch.zeros((steps, n), dtype=torch.bool, device=device)
    max_q_buf = torch.zeros((steps + 1, n), device=device)  # max_a Q(s_t, a) of every observation acted on
    next_eval = (global_step // config.eval_freq + 1) * config.eval_freq if config.eval_freq else None
    next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq if config.checkpoint_freq else None
    report.reset_clock(global_step)
    run.bar.update(global_step)
    interrupted = False

    while global_step < config.total_timesteps:
        with run.run_rng.active():
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
                        loss, q_mean = minibatch_loss(q_compiled, flat_obs[idx], flat_actions[idx],
                                                      flat_returns[idx], flat_valid[idx], config.loss)
                    gradient_step(loss, optimizer, params, max_grad_norm=config.max_grad_norm or None,
                                  scaler=precision.scaler)
                    lr_schedule.step()
                    update_step += 1
                    report.update(loss, q_mean)

            # -- report -----------------------------------------------------------------------------
            report.maybe_log(global_step, epsilon, optimizer.param_groups[0]["lr"])
            if next_eval is not None and global_step >= next_eval:
                next_eval = (global_step // config.eval_freq + 1) * config.eval_freq
                run.evaluations.submit(run, global_step)
                if on_eval is not None and on_eval(global_step, run.evaluations.drain()):  # see rlgen.dqn.train.train_steps
                    interrupted = True
                    break
            if next_ckpt is not None and global_step >= next_ckpt:
                next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq
                save_run(run, global_step, update_step)
            run.bar.update(rollout_size)
        if interrupt is not None and interrupt.requested:
            interrupted = True
            break
        yield global_step

    run.bar.close()
    return finish_run(run, global_step, update_step, interrupted, start_time)


def minibatch_loss(q_net, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor, valid: torch.Tensor,
                   kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """PQN's loss on a minibatch of rollout transitions against their Q(lambda) returns, over the
    valid ones (an autoreset step is no transition); returns (loss, mean Q of the taken actions)."""
    q_taken = q_net(obs).float().gather(1, actions[:, None]).squeeze(1)
    if kind == "mse":
        per_sample = 0.5 * (q_taken - returns) ** 2
    else:
        per_sample = F.smooth_l1_loss(q_taken, returns, reduction="none")
    count = valid.sum().clamp(min=1.0)
    return (per_sample * valid).sum() / count, (q_taken.detach() * valid).sum() / count


def make_pqn_optimization(config: PQNConfig, q_net: torch.nn.Module | list[torch.Tensor]):
    """The optimizer, its LR schedule over every minibatch update of the run (whole rollouts: the
    budget rounded up), and the updates per rollout. ``q_net``: the network or the tensors to optimize."""
    params = q_net.parameters() if isinstance(q_net, torch.nn.Module) else q_net
    optimizer = make_optimizer(config.optimizer, params, config.learning_rate, eps=config.adam_eps)
    updates_per_rollout = config.update_epochs * config.num_minibatches
    rollouts = -(-config.total_timesteps // (config.num_envs * config.num_steps))
    lr_schedule = make_lr_schedule(optimizer, config.lr_schedule, total_steps=rollouts * updates_per_rollout,
                                   final_factor=config.lr_final_factor)
    return optimizer, lr_schedule, updates_per_rollout
