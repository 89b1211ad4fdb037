"""Many DQN seeds in one process as one batched computation (``rlgen train-dqn ENV --seeds N``).

Each seed is a whole run (``rlgen.dqn.run``): its own environments, replay,
exploration and replay generator, random streams, logger and checkpoints, in
its own run directory under the group's (``rlgen.dqn.group``). What the seeds
share is the arithmetic: their Q-networks and targets are stacked
(``rlgen.training.stacked``), so acting is one vmapped forward for all seeds,
and an update is one vmapped TD loss (the single run's, ``rlgen.dqn.losses``),
one backward, a per-seed gradient clip and one optimizer step over the stacked
tensors. Seed i draws exactly what it draws alone, in the same order, so it
follows its single run's trajectory up to float rounding of the batched
matmuls. The loop below is ``rlgen.dqn.train``'s with its per-seed parts in
``for`` loops and its network parts batched.

Feed-forward Q-networks (MLP and CNN backbones; double, dueling, n-step,
prioritized) batch; memory Q-networks, dropout, compile and mixed precision are
refused before anything is built (the recurrent actor and sequence replay keep
per-seed state that does not stack yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from rlgen.dqn.config import DQNConfig
from rlgen.dqn.group import EvalHook, GroupResult, SeedGroup, run_group
from rlgen.dqn.learning import update_target
from rlgen.dqn.replay import ReplayBatch
from rlgen.dqn.schedules import epsilon_at
from rlgen.training import GracefulInterrupt


def train_seeds(configs: Sequence[DQNConfig], *, device: str = "auto", logdir: str | Path = "runs",
                resume: str | Path | None = None, progress: bool = True, on_eval: EvalHook | None = None) -> GroupResult:
    """Train one run per config (the same config with different seeds) as one batch.

    ``resume``: a group directory written by an earlier ``train_seeds``; every seed continues.
    Ctrl-C or SIGTERM stops all seeds at the same step, each saving its checkpoint.
    """
    return run_group(_loop, configs, device=device, logdir=logdir, resume=resume, progress=progress, on_eval=on_eval)


def _loop(group: SeedGroup, interrupt: GracefulInterrupt) -> GroupResult:
    runs, q, target = group.runs, group.q, group.target
    config, num_seeds, num_envs = runs[0].config, len(runs), runs[0].config.num_envs
    td_loss = batched_td_loss(q, target, runs[0].td_loss)
    global_step, update_step, learn_after = group.start.global_step, group.start.update_step, group.start.learn_after
    next_eval = (global_step // config.eval_freq + 1) * config.eval_freq if config.eval_freq else None
    next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq if config.checkpoint_freq else None
    vector_step = global_step // num_envs
    target_every = max(config.target_update_interval // num_envs, 1)
    interrupted = False

    while global_step < config.total_timesteps:
        # -- act: one forward for all seeds, then each seed's exploration and environments ----------
        epsilon = epsilon_at(config, global_step)
        greedy = group.greedy_actions()[0] if epsilon < 1.0 else [None] * num_seeds
        global_step += num_envs
        vector_step += 1
        for i, run in enumerate(runs):
            with run.run_rng.active():
                actions = run.actor.act(group.obs[i], epsilon, run.rng, greedy=greedy[i])
                next_obs, rewards, terminations, truncations, infos = run.envs.step(actions)
                run.buffer.add(actions, rewards, terminations, truncations, next_obs, run.actor.autoreset, None)
                run.actor.observe(terminations, truncations)
                group.obs[i] = next_obs
                if run.report.episodes(infos, global_step) and run.best is not None and config.keep_best_by == "train":
                    run.best.observe(run.report.recent_returns, q.row(i), global_step)

        # -- learn: each seed samples its own replay; one loss, backward and step for all ------------
        if global_step > learn_after and vector_step % config.train_freq == 0:
            for _ in range(runs[0].steps_per_phase):
                beta = config.per_beta0 + (1.0 - config.per_beta0) * min(1.0, global_step / config.total_timesteps)
                batches = [run.buffer.sample(config.batch_size, run.rng, beta=beta) for run in runs]
                loss, priorities, q_mean = td_loss(batches)  # (N,), (N, B), (N,)
                group.gradient_step(loss, config.max_grad_norm)
                update_step += 1
                if config.prioritized:
                    for run, batch, p in zip(runs, batches, priorities.float().cpu().numpy()):
                        run.buffer.update_priorities(batch.indices, p)
                group.counted_update(loss, q_mean)
        if vector_step % target_every == 0:
            update_target(q.parameters(), target.parameters(), config.tau)

        # -- report --------------------------------------------------------------------------------
        group.log(global_step, epsilon)
        if next_eval is not None and global_step >= next_eval:
            next_eval += config.eval_freq
            if group.evaluate(global_step):
                interrupted = True
                break
        if next_ckpt is not None and global_step >= next_ckpt:
            next_ckpt += config.checkpoint_freq
            group.save(global_step, update_step)
        group.bar.update(num_envs * num_seeds)
        if interrupt.requested:
            interrupted = True
            break

    return group.finish(global_step, update_step, interrupted)


def batched_td_loss(q, target, td_loss):
    """The single-run TD loss on every seed at once: a list of each seed's sampled batch in,
    (loss (N,), priorities (N, B), mean Q (N,)) out. The loss is shape-polymorphic and the
    stacked networks take (N, B, ...) inputs, so this is the single run's arithmetic row by row."""

    def loss(batches: list[ReplayBatch]):
        fields = [torch.stack([getattr(b, name) for b in batches]) for name in
                  ("obs", "actions", "returns", "next_obs", "discounts", "weights")]
        out = td_loss(q, target, ReplayBatch(*fields, None))
        return out.loss, out.priorities, out.q_mean

    return loss
