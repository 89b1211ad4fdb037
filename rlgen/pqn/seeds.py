"""Many PQN seeds in one process as one batched computation (``rlgen train-pqn ENV --seeds N``).

``rlgen.pqn.train``'s loop with the seeds' Q-networks stacked (``rlgen.dqn.group``):
each rollout step is one vmapped forward for every seed's copies, then each seed's
exploration and environments; the Q(lambda) targets of all seeds are one backward
pass over the rollout; each minibatch update is one vmapped loss (the single run's
``minibatch_loss``), one backward, a per-seed gradient clip and one optimizer step,
with each seed's minibatch order drawn from its own generator as alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from rlgen.dqn.actors import epsilon_greedy
from rlgen.dqn.group import EvalHook, GroupResult, SeedGroup, run_group
from rlgen.dqn.schedules import epsilon_at
from rlgen.pqn.config import PQNConfig
from rlgen.pqn.returns import q_lambda_returns
from rlgen.pqn.train import minibatch_loss
from rlgen.training import GracefulInterrupt


def train_seeds(configs: Sequence[PQNConfig], *, device: str = "auto", logdir: str | Path = "runs",
                resume: str | Path | None = None, progress: bool = True, on_eval: EvalHook | None = None) -> GroupResult:
    """Train one PQN run per config (the same config with different seeds) as one batch (see ``rlgen.dqn.seeds``)."""
    return run_group(_loop, configs, device=device, logdir=logdir, resume=resume, progress=progress, on_eval=on_eval)


def _loop(group: SeedGroup, interrupt: GracefulInterrupt) -> GroupResult:
    runs, q = group.runs, group.q
    config, device = runs[0].config, runs[0].device
    seeds, n, steps = len(runs), config.num_envs, config.num_steps
    rollout_size, num_actions = n * steps, runs[0].num_actions
    global_step, update_step = group.start.global_step, group.start.update_step
    # Rollout storage, (T, S, N, ...) on the device.
    first_obs = torch.as_tensor(group.obs[0])
    obs_buf = torch.zeros((steps, seeds, n, *first_obs.shape[1:]), dtype=first_obs.dtype, device=device)
    actions_buf = torch.zeros((steps, seeds, n), dtype=torch.long, device=device)
    rewards_buf = torch.zeros((steps, seeds, n), device=device)
    terms_buf = torch.zeros((steps, seeds, n), dtype=torch.bool, device=device)
    truncs_buf = torch.zeros((steps, seeds, n), dtype=torch.bool, device=device)
    valid_buf = torch.zeros((steps, seeds, n), dtype=torch.bool, device=device)
    max_q_buf = torch.zeros((steps + 1, seeds, n), device=device)
    minibatch = torch.func.vmap(lambda params, buffers, *batch: minibatch_loss(q.functional(params, buffers), *batch,
                                                                               config.loss))
    rows = torch.arange(seeds, device=device)[:, None]
    next_eval = (global_step // config.eval_freq + 1) * config.eval_freq if config.eval_freq else None
    next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq if config.checkpoint_freq else None
    interrupted = False

    while global_step < config.total_timesteps:
        # -- rollout: T epsilon-greedy vector steps of every seed ----------------------------------------
        for t in range(steps):
            epsilon = epsilon_at(config, global_step)
            obs_buf[t] = torch.as_tensor(np.stack(group.obs), device=device)
            greedy, max_q_buf[t] = group.greedy_actions()
            global_step += n
            for i, run in enumerate(runs):
                with run.run_rng.active():
                    actions = epsilon_greedy(greedy[i], epsilon, run.rng, num_actions)
                    next_obs, rewards, terminations, truncations, infos = run.envs.step(actions)
                    actions_buf[t, i] = torch.as_tensor(actions, device=device)
                    rewards_buf[t, i] = torch.as_tensor(rewards, device=device)
                    terms_buf[t, i] = torch.as_tensor(terminations, device=device)
                    truncs_buf[t, i] = torch.as_tensor(truncations, device=device)
                    valid_buf[t, i] = torch.as_tensor(~run.actor.autoreset, device=device)
                    run.actor.observe(terminations, truncations)
                    group.obs[i] = next_obs
                    run.report.episodes(infos, global_step)
        max_q_buf[steps] = group.greedy_actions()[1]

        # -- Q(lambda) targets of every seed, backwards over the rollout ---------------------------------
        returns = q_lambda_returns(rewards_buf.flatten(1), terms_buf.flatten(1), truncs_buf.flatten(1),
                                   max_q_buf[1:].flatten(1), config.gamma, config.q_lambda).view(steps, seeds, n)

        # -- learn: epochs of minibatches, each seed's order from its own generator ----------------------
        flat = lambda x: x.transpose(0, 1).flatten(1, 2)  # (T, S, N, ...) -> (S, T * N, ...)
        flat_obs, flat_actions, flat_returns = flat(obs_buf), flat(actions_buf), flat(returns)
        flat_valid = flat(valid_buf).float()
        size = rollout_size // config.num_minibatches
        for _ in range(config.update_epochs):
            orders = torch.as_tensor(np.stack([run.rng.permutation(rollout_size) for run in runs]), device=device)
            for start in range(0, size * config.num_minibatches, size):
                idx = orders[:, start:start + size]  # (S, size)
                loss, q_mean = minibatch(q.params, q.buffers, flat_obs[rows, idx], flat_actions[rows, idx],
                                         flat_returns[rows, idx], flat_valid[rows, idx])
                group.gradient_step(loss, config.max_grad_norm)
                update_step += 1
                group.counted_update(loss, q_mean)

        # -- report --------------------------------------------------------------------------------------
        group.log(global_step, epsilon)
        if next_eval is not None and global_step >= next_eval:
            next_eval = (global_step // config.eval_freq + 1) * config.eval_freq
            if group.evaluate(global_step):
                interrupted = True
                break
        if next_ckpt is not None and global_step >= next_ckpt:
            next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq
            group.save(global_step, update_step)
        group.bar.update(rollout_size * seeds)
        if interrupt.requested:
            interrupted = True
            break

    return group.finish(global_step, update_step, interrupted)
