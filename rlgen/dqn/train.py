"""The DQN training loop, written out top to bottom (CleanRL style).

Variants (double, dueling, n-step, prioritized, Polyak targets, LR schedules)
are config switches; the shared mechanics (device, seeding, gradient step,
checkpoints, TensorBoard, progress bar, Ctrl-C) come from ``rlgen.training``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rlgen.config import to_dict
from rlgen.dqn.config import DQNConfig
from rlgen.dqn.evaluate import evaluate_policy
from rlgen.dqn.networks import build_q_network
from rlgen.dqn.reporting import TrainingReport
from rlgen.dqn.replay import PrioritizedReplayBuffer, ReplayBatch, ReplayBuffer
from rlgen.dqn.schedules import epsilon_at
from rlgen.envs import get_spec, make_vector_env
from rlgen.training import (
    GracefulInterrupt,
    Precision,
    ProgressBar,
    RunLogger,
    gradient_step,
    load_checkpoint,
    make_lr_schedule,
    make_optimizer,
    maybe_compile,
    resolve_device,
    save_checkpoint,
    seed_everything,
    torch_threads,
)


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path
    global_step: int
    eval_mean: float | None
    eval_std: float | None
    wall_seconds: float
    interrupted: bool


def td_loss(q_net, target_net, batch: ReplayBatch, config: DQNConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TD loss of a batch; returns (loss, per-sample TD errors, mean Q of the taken actions)."""
    with torch.no_grad():
        next_target = target_net(batch.next_obs)  # (B, A)
        if config.double_q:
            # Double DQN (van Hasselt et al. 2016): the online net picks the next action, the
            # target net scores it. A separate no-grad pass (not one pass over [obs; next_obs])
            # keeps backward to B rows: backward is the largest cost of a small update on CPU.
            next_action = q_net(batch.next_obs).argmax(dim=1, keepdim=True)  # (B, 1)
            next_values = next_target.gather(1, next_action).squeeze(1)
        else:
            next_values = next_target.max(dim=1).values
    q_all = q_net(batch.obs)  # (B, A)
    targets = (batch.returns + batch.discounts * next_values).float()  # (B,)
    q_taken = q_all.gather(1, batch.actions.unsqueeze(1)).squeeze(1).float()  # (B,)
    td_errors = targets - q_taken
    if config.loss == "huber":
        per_sample = F.smooth_l1_loss(q_taken, targets, reduction="none")
    else:
        per_sample = F.mse_loss(q_taken, targets, reduction="none")
    loss = (batch.weights * per_sample).mean() if config.prioritized else per_sample.mean()
    return loss, td_errors.detach(), q_taken.detach().mean()


class BestSnapshot:
    """Keeps the weights whose recent training episodes scored best (``keep_best``).

    DQN's greedy policy can dip late in training; the moving average of the
    training returns (already paid for in environment steps) tells when the
    network was at its best, so no evaluation episodes are spent.
    """

    def __init__(self, window: int):
        self.window = window
        self.mean = -float("inf")
        self.step = -1
        self.state: dict[str, torch.Tensor] | None = None

    def observe(self, returns: list[float], q_net: torch.nn.Module, global_step: int) -> None:
        if len(returns) < self.window:
            return
        mean = float(np.mean(returns[-self.window:]))
        if mean >= self.mean:  # ties go to the later, longer-trained network
            self.mean, self.step = mean, global_step
            self.state = {k: v.detach().clone() for k, v in q_net.state_dict().items()}

    def finish(self, returns: list[float], q_net: torch.nn.Module, target_net: torch.nn.Module,
               logger: RunLogger, global_step: int) -> None:
        """At the end of training: go back to the snapshot if it scored better, and log which one was kept."""
        if self.restore_if_better(returns, q_net, target_net):
            logger.scalar("charts/kept_best_step", self.step, global_step)
            logger.scalar("charts/kept_best_return", self.mean, global_step)

    def restore_if_better(self, returns: list[float], q_net: torch.nn.Module, target_net: torch.nn.Module) -> bool:
        final = float(np.mean(returns[-self.window:])) if len(returns) >= self.window else -float("inf")
        if self.state is None or final >= self.mean:
            return False
        q_net.load_state_dict(self.state)
        target_net.load_state_dict(self.state)
        return True


def make_optimization(config: DQNConfig, q_net: torch.nn.Module):
    """The optimizer, its LR schedule over all updates, and the gradient steps per training phase.

    ``gradient_steps`` <= 0 means as many updates as transitions collected (SB3's -1).
    """
    optimizer = make_optimizer(
        config.optimizer, q_net.parameters(), config.learning_rate,
        weight_decay=config.weight_decay, eps=config.adam_eps,
    )
    steps_per_phase = config.gradient_steps if config.gradient_steps > 0 else config.train_freq * config.num_envs
    total_updates = max(1, (config.total_timesteps - config.learning_starts) // (config.train_freq * config.num_envs)
                        * steps_per_phase)
    lr_schedule = make_lr_schedule(
        optimizer, config.lr_schedule, total_steps=total_updates,
        warmup_steps=config.lr_warmup_steps, final_factor=config.lr_final_factor,
    )
    return optimizer, lr_schedule, steps_per_phase


def update_target(
    online: torch.nn.Module | list[torch.Tensor], target: torch.nn.Module | list[torch.Tensor], tau: float
) -> None:
    """Hard copy (tau = 1) or Polyak averaging of the online parameters into the target's.

    Takes modules, or their parameter lists listed once by a hot loop.
    """
    if isinstance(online, torch.nn.Module):
        online, target = list(online.parameters()), list(target.parameters())
    with torch.no_grad():
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, tau)


def train(
    config: DQNConfig,
    *,
    device: str = "auto",
    logdir: str | Path = "runs",
    resume: str | Path | None = None,
    progress: bool = True,
    run_name: str | None = None,
) -> TrainResult:
    """Train a DQN agent as ``config`` says; returns where the run and its checkpoint are."""
    start_time = time.perf_counter()
    torch_device = resolve_device(device)
    with torch_threads(cpu_threads(config, torch_device)):
        return _train(config, torch_device, logdir, resume, progress, run_name, start_time)


def cpu_threads(config: DQNConfig, device: torch.device) -> int | None:
    """Torch CPU threads for this run: 1 for MLPs (tiny matmuls only contend), else torch's choice."""
    if device.type != "cpu":
        return None
    return config.cpu_threads or (1 if config.backbone.kind == "mlp" else None)


def _train(config: DQNConfig, torch_device: torch.device, logdir: str | Path, resume: str | Path | None,
           progress: bool, run_name: str | None, start_time: float) -> TrainResult:
    seed_everything(config.seed, deterministic=config.deterministic)
    spec = get_spec(config.env_id)
    envs = make_vector_env(config.env_id, config.num_envs, seed=config.seed)
    obs_space, num_actions = envs.single_observation_space, int(envs.single_action_space.n)

    q_net = build_q_network(config, obs_space, num_actions).to(torch_device)
    target_net = copy.deepcopy(q_net)
    target_net.requires_grad_(False)
    optimizer, lr_schedule, steps_per_phase = make_optimization(config, q_net)
    # Listed once: walking the module tree on every update costs more than the update's Adam step.
    online_params, target_params = list(q_net.parameters()), list(target_net.parameters())
    precision = Precision(config.precision, torch_device)
    q_compiled = maybe_compile(q_net, config.compile)

    buffer_kwargs = dict(
        capacity=config.buffer_size, num_envs=config.num_envs, obs_shape=obs_space.shape,
        obs_dtype=obs_space.dtype,
        frame_stack=spec.frame_stack, n_step=config.n_step, gamma=config.gamma, device=torch_device,
    )
    if config.prioritized:
        buffer = PrioritizedReplayBuffer(**buffer_kwargs, alpha=config.per_alpha, eps=config.per_eps)
    else:
        buffer = ReplayBuffer(**buffer_kwargs)
    rng = np.random.default_rng(config.seed)

    global_step, update_step = 0, 0
    if resume is not None:
        resume = Path(resume)
        resume = resume / "checkpoint.safetensors" if resume.is_dir() else resume
        ckpt = load_checkpoint(resume, map_location=torch_device)
        # A resumed run keeps logging into its own directory.
        logdir, run_name = resume.parent.parent, resume.parent.name
        ckpt.load_module("q_net", q_net)
        ckpt.load_module("target_net", target_net)
        ckpt.load_optimizer("optimizer", optimizer)
        lr_schedule.load_state_dict(ckpt.meta["lr_schedule"])
        global_step, update_step = ckpt.meta["step"], ckpt.meta["update_step"]
        ckpt.restore_rng()
        rng.bit_generator.state = ckpt.meta["replay_rng"]
    logger = RunLogger(logdir, config.env_id, "dqn", config.seed, to_dict(config), run_name=run_name)
    checkpoint_path = logger.run_dir / "checkpoint.safetensors"

    def save(final: bool = False) -> Path:
        if config.save_replay:
            buffer.save(checkpoint_path.with_name("replay.safetensors"))
        return save_checkpoint(
            checkpoint_path,
            modules={"q_net": q_net, "target_net": target_net},
            optimizers={"optimizer": optimizer},
            meta={
                "algo": "dqn", "config": to_dict(config), "step": global_step,
                "update_step": update_step, "lr_schedule": lr_schedule.state_dict(),
                "replay_rng": rng.bit_generator.state, "final": final,
                "num_actions": num_actions, "obs_shape": list(obs_space.shape),
                "obs_dtype": str(obs_space.dtype),
            },
        )

    # After a resume the environments start new episodes; the buffer continues.
    learn_after = config.learning_starts
    replay_file = checkpoint_path.with_name("replay.safetensors")
    if resume is not None and replay_file.exists():
        buffer.load(replay_file)
        buffer.skip_slot()
    elif resume is not None:
        learn_after = global_step + config.learning_starts  # refill an empty buffer first
    obs, _ = envs.reset(seed=config.seed + global_step)
    buffer.start(obs)
    autoreset = np.zeros(config.num_envs, dtype=bool)
    best = BestSnapshot(config.keep_best_window) if config.keep_best else None
    next_eval = global_step + config.eval_freq if config.eval_freq else None
    next_ckpt = global_step + config.checkpoint_freq if config.checkpoint_freq else None
    vector_step = global_step // config.num_envs
    target_every = max(config.target_update_interval // config.num_envs, 1)
    interrupted = False

    bar = ProgressBar(config.total_timesteps, desc=f"dqn {config.env_id}", unit="step", disable=not progress)
    report = TrainingReport(logger, bar, config.log_interval, global_step, torch_device,
                            keep_returns=max(20, config.keep_best_window))
    bar.update(global_step)
    with GracefulInterrupt() as interrupt:
        while global_step < config.total_timesteps:
            # -- act -------------------------------------------------------------------------
            epsilon = epsilon_at(config, global_step)
            if epsilon >= 1.0:  # all random: skip the forward pass
                actions = rng.integers(0, num_actions, size=config.num_envs)
            else:
                with torch.inference_mode():
                    obs_t = torch.as_tensor(obs, device=torch_device)
                    actions = q_compiled(obs_t).argmax(dim=1).cpu().numpy()
                explore = rng.random(config.num_envs) < epsilon
                actions = np.where(explore, rng.integers(0, num_actions, size=config.num_envs), actions)
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            buffer.add(actions, rewards, terminations, truncations, next_obs, autoreset)
            autoreset = terminations | truncations
            obs = next_obs
            global_step += config.num_envs
            vector_step += 1

            if report.episodes(infos, global_step) and best is not None:
                best.observe(report.recent_returns, q_net, global_step)

            # -- learn -----------------------------------------------------------------------
            if global_step > learn_after and vector_step % config.train_freq == 0:
                q_net.train()
                for _ in range(steps_per_phase):
                    beta = config.per_beta0 + (1.0 - config.per_beta0) * min(1.0, global_step / config.total_timesteps)
                    batch = buffer.sample(config.batch_size, rng, beta=beta)
                    with precision.autocast():
                        loss, td_errors, q_mean = td_loss(q_compiled, target_net, batch, config)
                    gradient_step(
                        loss, optimizer, online_params,
                        max_grad_norm=config.max_grad_norm or None, scaler=precision.scaler,
                    )
                    lr_schedule.step()
                    update_step += 1
                    if config.prioritized:
                        buffer.update_priorities(batch.indices, td_errors.float().cpu().numpy())
                    report.update(loss, q_mean)
            if vector_step % target_every == 0:
                update_target(online_params, target_params, config.tau)

            # -- report ----------------------------------------------------------------------
            report.maybe_log(global_step, epsilon, optimizer.param_groups[0]["lr"])
            if next_eval is not None and global_step >= next_eval:
                next_eval += config.eval_freq
                mean, std = evaluate_policy(q_net, config.env_id, config.eval_during_episodes,
                                            seed=config.seed + 10_000, device=torch_device)
                logger.scalar("eval/episodic_return", mean, global_step)
            if next_ckpt is not None and global_step >= next_ckpt:
                next_ckpt += config.checkpoint_freq
                save()
            bar.update(config.num_envs)
            if interrupt.requested:
                interrupted = True
                break
    bar.close()
    envs.close()
    if best is not None and not interrupted:
        best.finish(report.recent_returns, q_net, target_net, logger, global_step)
    checkpoint = save(final=not interrupted)
    from rlgen.dqn.video import record_episode

    return finish_run(logger, config, q_net, checkpoint, global_step, time.perf_counter() - start_time,
                      interrupted, evaluate_policy, record_episode, torch_device)


def finish_run(logger: RunLogger, config: DQNConfig, q_net: torch.nn.Module, checkpoint: Path, global_step: int,
               train_seconds: float, interrupted: bool, evaluate, record, device: torch.device) -> TrainResult:
    """The end of a DQN run (feed-forward or recurrent): final evaluation, optional video, hparams.

    ``evaluate`` and ``record`` are the agent kind's ``evaluate_policy`` / ``record_episode``.
    """
    eval_mean = eval_std = None
    if not interrupted and config.eval_episodes > 0:
        eval_mean, eval_std = evaluate(q_net, config.env_id, config.eval_episodes,
                                       seed=config.seed + 100_000, device=device)
        logger.scalar("eval/episodic_return", eval_mean, global_step)
        logger.scalar("eval/episodic_return_std", eval_std, global_step)
        if config.capture_video:
            frames, _ = record(q_net, config.env_id, seed=config.seed, device=device)
            logger.video("eval/video", frames, global_step, fps=30)
    logger.hparams_final({"eval/episodic_return": eval_mean if eval_mean is not None else float("nan")})
    logger.close()
    return TrainResult(
        run_dir=logger.run_dir, checkpoint=checkpoint, global_step=global_step, eval_mean=eval_mean,
        eval_std=eval_std, wall_seconds=train_seconds, interrupted=interrupted,
    )
