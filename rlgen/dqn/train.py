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

import time
from collections.abc import Generator
from pathlib import Path

import torch

from rlgen.dqn.config import DQNConfig
from rlgen.dqn.evaluate import evaluate_policy
from rlgen.dqn.learning import update_target
from rlgen.dqn.evaluations import evaluation_score, make_evaluations
from rlgen.dqn.run import QRun, build_run, save_run
from rlgen.dqn.schedules import epsilon_at
from rlgen.training import (
    GracefulInterrupt,
    RunLogger,
    TrainResult,
    gradient_step,
    resolve_device,
    set_deterministic,
    torch_threads,
)

def train(
    config: DQNConfig,
    *,
    device: str = "auto",
    logdir: str | Path = "runs",
    resume: str | Path | None = None,
    progress: bool = True,
    run_name: str | None = None,
    on_eval=None,
) -> TrainResult:
    """Train a DQN agent as ``config`` says; returns where the run and its checkpoint are.

    Ctrl-C or SIGTERM stops after the current step, saves and returns with
    ``interrupted=True``; ``resume`` (a run directory or checkpoint) continues a run.
    """
    return run_to_end(train_steps, config, device=device, logdir=logdir, resume=resume, progress=progress,
                      run_name=run_name, on_eval=on_eval)


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
    on_eval=None,
) -> Generator[int, None, TrainResult]:
    """The training loop as a generator: each ``next()`` takes one vector step and yields ``global_step``.

    ``train`` drains it; stepping several runs alternately in one process (many
    seeds) gives each exactly what it gives alone. Returns the ``TrainResult``.
    ``on_eval(global_step, [return])`` is called after each evaluation during training
    (``eval_freq``); returning True stops the run there as a stop request would (pruning).
    """
    start_time = time.perf_counter()
    set_deterministic(config.deterministic)
    run, start = build_run(config, device, logdir=logdir, resume=resume, run_name=run_name, progress=progress)
    run.evaluations = make_evaluations(config, device, on_eval)
    q_net, target_net, actor, buffer, envs, rng = run.q_net, run.target_net, run.actor, run.buffer, run.envs, run.rng
    optimizer, lr_schedule, report, best = run.optimizer, run.lr_schedule, run.report, run.best
    # Listed once: walking the module tree on every update costs more than a small update's Adam step.
    online_params, target_params = list(q_net.parameters()), list(target_net.parameters())
    obs, global_step, update_step, learn_after = start.obs, start.global_step, start.update_step, start.learn_after
    next_eval = (global_step // config.eval_freq + 1) * config.eval_freq if config.eval_freq else None
    next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq if config.checkpoint_freq else None
    vector_step = global_step // config.num_envs
    target_every = max(config.target_update_interval // config.num_envs, 1)
    report.reset_clock(global_step)
    run.bar.update(global_step)
    interrupted = False

    while global_step < config.total_timesteps:
        with run.run_rng.active():
            # -- act ---------------------------------------------------------------------------
            epsilon = epsilon_at(config, global_step)
            actions = actor.act(obs, epsilon, rng)
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            buffer.add(actions, rewards, terminations, truncations, next_obs, actor.autoreset, run.memory_rows())
            actor.observe(terminations, truncations)
            obs = next_obs
            global_step += config.num_envs
            vector_step += 1

            if report.episodes(infos, global_step) and best is not None and config.keep_best_by == "train":
                best.observe(report.recent_returns, q_net, global_step)

            # -- learn -------------------------------------------------------------------------
            if global_step > learn_after and vector_step % config.train_freq == 0:
                q_net.train()
                for _ in range(run.steps_per_phase):
                    beta = config.per_beta0 + (1.0 - config.per_beta0) * min(1.0, global_step / config.total_timesteps)
                    batch = buffer.sample(config.batch_size, rng, beta=beta)
                    with run.precision.autocast():
                        out = run.td_loss(run.q_compiled, target_net, batch)
                    gradient_step(
                        out.loss, optimizer, online_params,
                        max_grad_norm=config.max_grad_norm or None, scaler=run.precision.scaler,
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
                run.evaluations.submit(run, global_step)
                if on_eval is not None and on_eval(global_step, run.evaluations.drain()):
                    interrupted = True
                    break
            if next_ckpt is not None and global_step >= next_ckpt:
                next_ckpt += config.checkpoint_freq
                save_run(run, global_step, update_step)
            run.bar.update(config.num_envs)
        if interrupt is not None and interrupt.requested:
            interrupted = True
            break
        yield global_step

    run.bar.close()
    return finish_run(run, global_step, update_step, interrupted, start_time)


def finish_run(run: QRun, global_step: int, update_step: int, interrupted: bool, start_time: float) -> TrainResult:
    """Close the envs, go back to the kept best network, save, then evaluate (in that order: the
    checkpoint is on disk before anything that could fail or be interrupted)."""
    run.envs.close()
    with run.run_rng.active():
        run.evaluations.drain()
        if run.best is not None and not interrupted:
            run.best.finish(final_score(run, global_step), run.q_net, run.target_net, run.logger, global_step)
        checkpoint = save_run(run, global_step, update_step, final=not interrupted)
        run.evaluations.close()
        metrics = final_evaluation(run.logger, run.config, run.q_net, global_step, interrupted, run.device)
    run.run_rng.release()
    return TrainResult(run_dir=run.logger.run_dir, checkpoint=checkpoint, step=global_step, metrics=metrics,
                       interrupted=interrupted, wall_seconds=time.perf_counter() - start_time)


def final_score(run: QRun, global_step: int) -> float:
    """The final network's score for keep_best: its training returns, or an evaluation like those during
    training (``keep_best_by=eval``): the one taken at this step if there was one (the same network)."""
    if run.config.keep_best_by == "train":
        return run.best.training_score(run.report.recent_returns)
    if run.last_eval is not None and run.last_eval[0] == global_step:
        return run.last_eval[1]
    return evaluation_score(run)


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
