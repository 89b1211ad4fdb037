"""DQN with memory (LSTM, GRU or windowed transformer Q-networks), written out top to bottom.

The loop is ``rlgen.dqn.train``'s with three differences, after R2D2
(Kapturowski et al. 2019):

- acting carries each env copy's memory across steps (``SequenceActor``) and
  clears it where an episode starts;
- replay stores trajectories and samples chunks: a burn-in that only warms up
  the recurrent state (optionally starting from the state stored while
  acting), the trained steps, and n more steps to bootstrap from;
- the TD loss is masked per step (final-observation slots carry none) and a
  prioritized chunk's priority mixes the max and mean |TD error|.

Double DQN, n-step returns, dueling heads, prioritized replay, Polyak or hard
target updates, LR schedules, ``train_freq`` / ``gradient_steps`` and the
epsilon schedule mean what they mean for the feed-forward agent.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rlgen.config import to_dict
from rlgen.dqn.config import DQNConfig
from rlgen.dqn.recurrent_acting import SequenceActor, evaluate_sequence_policy, record_sequence_episode
from rlgen.dqn.recurrent_networks import (
    RecurrentQNetwork,
    TransformerQNetwork,
    build_sequence_q_network,
    is_sequence_config,
)
from rlgen.dqn.schedules import epsilon_at
from rlgen.dqn.sequence_replay import PrioritizedSequenceReplayBuffer, SequenceBatch, SequenceReplayBuffer
from rlgen.dqn.reporting import TrainingReport
from rlgen.dqn.train import BestSnapshot, TrainResult, finish_run, make_optimization, update_target
from rlgen.envs import make_vector_env
from rlgen.training import (
    GracefulInterrupt,
    Precision,
    ProgressBar,
    RunLogger,
    gradient_step,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    seed_everything,
    torch_threads,
)


def check_sequence_config(config: DQNConfig) -> None:
    """Raise ``ValueError`` naming the first field the recurrent trainer cannot use."""
    if not is_sequence_config(config):
        raise ValueError(
            f"backbone.kind={config.backbone.kind!r}: the recurrent trainer needs lstm, gru or transformer"
        )
    for name in ("sequence_length", "context_length"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name}={getattr(config, name)} must be >= 1")
    if config.burn_in < 0:
        raise ValueError(f"burn_in={config.burn_in} must be >= 0")
    if not 0.0 <= config.per_eta <= 1.0:
        raise ValueError(f"per_eta={config.per_eta} must be in [0, 1]")
    if config.compile:
        raise ValueError("compile=true is not supported for recurrent/transformer Q-networks; set compile=false")


def context_steps(config: DQNConfig) -> int:
    """Chunk steps before the trained ones: the RNN burn-in, or the transformer's window minus one."""
    return config.context_length - 1 if config.backbone.kind == "transformer" else config.burn_in


def sequence_td_loss(
    q_net: RecurrentQNetwork | TransformerQNetwork,
    target_net: RecurrentQNetwork | TransformerQNetwork,
    batch: SequenceBatch,
    config: DQNConfig,
    first: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Masked TD loss of a batch of chunks.

    Args:
        first: chunk steps before the trained ones (burn-in / context).

    Returns:
        (loss, per-chunk priority (B,) = eta * max + (1 - eta) * mean |TD| over trained
        steps, mean Q of the taken actions).
    """
    state = None
    if batch.state is not None and isinstance(q_net, RecurrentQNetwork):
        state = q_net.unpack_state(batch.state)
    steps = batch.actions.shape[1]  # T
    q_all = q_net.chunk_q(batch.obs, batch.resets, state, first)  # (B, L - first, A)
    bootstrap = (batch.bootstrap - first).unsqueeze(-1).expand(-1, -1, q_all.shape[-1])  # (B, T, A)
    with torch.no_grad():
        next_target = target_net.chunk_q(batch.obs, batch.resets, state, first).gather(1, bootstrap)  # (B, T, A)
        if config.double_q:
            # Double DQN: the online net picks the bootstrap action, the target net scores it.
            next_online = q_all.detach().gather(1, bootstrap)
            next_values = next_target.gather(2, next_online.argmax(dim=2, keepdim=True)).squeeze(2)  # (B, T)
        else:
            next_values = next_target.max(dim=2).values
    targets = (batch.returns + batch.discounts * next_values).float()  # (B, T)
    q_taken = q_all[:, :steps].gather(2, batch.actions.unsqueeze(2)).squeeze(2).float()  # (B, T)
    if config.loss == "huber":
        per_step = F.smooth_l1_loss(q_taken, targets, reduction="none")
    else:
        per_step = F.mse_loss(q_taken, targets, reduction="none")
    mask = batch.mask.to(per_step.dtype)  # (B, T)
    counts = mask.sum(dim=1)  # (B,)
    if config.prioritized:
        per_chunk = (per_step * mask).sum(dim=1) / counts.clamp(min=1.0)  # (B,)
        loss = (batch.weights * per_chunk).mean()
    else:
        loss = (per_step * mask).sum() / counts.sum().clamp(min=1.0)
    with torch.no_grad():
        td = (targets - q_taken).abs() * mask  # (B, T)
        priority = config.per_eta * td.max(dim=1).values + (1.0 - config.per_eta) * td.sum(dim=1) / counts.clamp(min=1.0)
        q_mean = (q_taken * mask).sum() / counts.sum().clamp(min=1.0)
    return loss, priority, q_mean


def train(
    config: DQNConfig,
    *,
    device: str = "auto",
    logdir: str | Path = "runs",
    resume: str | Path | None = None,
    progress: bool = True,
    run_name: str | None = None,
) -> TrainResult:
    """Train a recurrent or transformer DQN agent as ``config`` says (same contract as ``rlgen.dqn.train.train``).

    A resumed run restores weights, optimizer, schedules and step counts; its replay
    starts empty and refills for ``learning_starts`` steps before updates resume.
    """
    check_sequence_config(config)
    start_time = time.perf_counter()
    torch_device = resolve_device(device)
    # cpu_threads 0 keeps torch's choice; the memory presets ask for 1 (small RNNs only contend).
    with torch_threads(config.cpu_threads if torch_device.type == "cpu" else None):
        return _train(config, torch_device, logdir, resume, progress, run_name, start_time)


def _train(config: DQNConfig, torch_device: torch.device, logdir: str | Path, resume: str | Path | None,
           progress: bool, run_name: str | None, start_time: float) -> TrainResult:
    seed_everything(config.seed, deterministic=config.deterministic)
    envs = make_vector_env(config.env_id, config.num_envs, seed=config.seed)
    obs_space, num_actions = envs.single_observation_space, int(envs.single_action_space.n)

    q_net = build_sequence_q_network(config, obs_space, num_actions).to(torch_device)
    target_net = copy.deepcopy(q_net)
    target_net.requires_grad_(False)
    optimizer, lr_schedule, steps_per_phase = make_optimization(config, q_net)
    # Listed once: walking the module tree on every update costs more than a small update's Adam step.
    online_params, target_params = list(q_net.parameters()), list(target_net.parameters())
    precision = Precision(config.precision, torch_device)

    first = context_steps(config)
    store_state = config.store_state and isinstance(q_net, RecurrentQNetwork)
    buffer_kwargs = dict(
        capacity=config.buffer_size, num_envs=config.num_envs, obs_shape=obs_space.shape,
        obs_dtype=np.uint8 if obs_space.dtype == np.bool_ else obs_space.dtype,
        burn_in=first, sequence_length=config.sequence_length, n_step=config.n_step, gamma=config.gamma,
        state_dim=q_net.state_dim if store_state else 0, device=torch_device,
    )
    if config.prioritized:
        buffer = PrioritizedSequenceReplayBuffer(**buffer_kwargs, alpha=config.per_alpha, eps=config.per_eps)
    else:
        buffer = SequenceReplayBuffer(**buffer_kwargs)
    rng = np.random.default_rng(config.seed)

    global_step, update_step = 0, 0
    if resume is not None:
        resume = Path(resume)
        resume = resume / "checkpoint.safetensors" if resume.is_dir() else resume
        ckpt = load_checkpoint(resume, map_location=torch_device)
        logdir, run_name = resume.parent.parent, resume.parent.name  # keep logging into the run's directory
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

    # The buffer needs whole chunks before it can be sampled, whatever learning_starts says.
    learn_after = global_step + max(config.learning_starts, 2 * buffer.chunk_length * config.num_envs)
    actor = SequenceActor(q_net, config.num_envs, torch_device)  # clears a copy's memory at its episode starts
    obs, _ = envs.reset(seed=config.seed + global_step)
    buffer.start(obs, actor.packed_state() if store_state else None)
    next_eval = global_step + config.eval_freq if config.eval_freq else None
    next_ckpt = global_step + config.checkpoint_freq if config.checkpoint_freq else None
    vector_step = global_step // config.num_envs
    target_every = max(config.target_update_interval // config.num_envs, 1)
    interrupted = False

    bar = ProgressBar(config.total_timesteps, desc=f"dqn-{config.backbone.kind} {config.env_id}", unit="step",
                      disable=not progress)
    report = TrainingReport(logger, bar, config.log_interval, global_step, torch_device,
                            keep_returns=max(20, config.keep_best_window))
    best = BestSnapshot(config.keep_best_window) if config.keep_best else None
    bar.update(global_step)
    with GracefulInterrupt() as interrupt:
        while global_step < config.total_timesteps:
            # -- act: the forward pass runs even for random actions, to keep the memory current --
            epsilon = epsilon_at(config, global_step)
            q_net.eval()
            actions = actor.step(obs).argmax(dim=1).cpu().numpy()
            explore = rng.random(config.num_envs) < epsilon
            actions = np.where(explore, rng.integers(0, num_actions, size=config.num_envs), actions)
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            buffer.add(actions, rewards, terminations, truncations, next_obs, actor.autoreset,
                       actor.packed_state() if store_state else None)
            actor.observe(terminations, truncations)
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
                        loss, priorities, q_mean = sequence_td_loss(q_net, target_net, batch, config, first)
                    gradient_step(
                        loss, optimizer, online_params,
                        max_grad_norm=config.max_grad_norm or None, scaler=precision.scaler,
                    )
                    lr_schedule.step()
                    update_step += 1
                    if config.prioritized:
                        buffer.update_priorities(batch.indices, priorities.float().cpu().numpy())
                    report.update(loss, q_mean)
            if vector_step % target_every == 0:
                update_target(online_params, target_params, config.tau)

            # -- report ----------------------------------------------------------------------
            report.maybe_log(global_step, epsilon, optimizer.param_groups[0]["lr"])
            if next_eval is not None and global_step >= next_eval:
                next_eval += config.eval_freq
                mean, _ = evaluate_sequence_policy(q_net, config.env_id, config.eval_during_episodes,
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
    return finish_run(logger, config, q_net, checkpoint, global_step, time.perf_counter() - start_time,
                      interrupted, evaluate_sequence_policy, record_sequence_episode, torch_device)
