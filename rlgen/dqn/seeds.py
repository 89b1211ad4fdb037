"""Many DQN seeds in one process as one batched computation (``rlgen train-dqn ENV --seeds N``).

Each seed is a whole run (``rlgen.dqn.run``): its own environments, replay,
exploration and replay generator, random streams, logger and checkpoints, in
its own run directory under the group's. What the seeds share is the
arithmetic: their Q-networks and targets are stacked (``rlgen.training.stacked``)
so acting is one vmapped forward for all seeds, and an update is one vmapped TD
loss, one backward, a per-seed gradient clip and one optimizer step over the
stacked tensors. Seed i draws exactly what it draws alone, in the same order,
so it follows its single run's trajectory up to float rounding of the batched
matmuls. The loop below is the single-seed loop of ``rlgen.dqn.train`` with
its per-seed parts in ``for`` loops and its network parts batched.

Feed-forward Q-networks (MLP and CNN backbones; double, dueling, n-step,
prioritized) batch; memory Q-networks, dropout, compile and mixed precision are
refused before anything is built (the recurrent actor and sequence replay keep
per-seed state that does not stack yet).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlgen.config import to_dict
from rlgen.dqn.config import DQNConfig
from rlgen.dqn.evaluate import evaluate_policy
from rlgen.dqn.learning import make_optimization, update_target
from rlgen.dqn.recurrent_networks import is_sequence_config
from rlgen.dqn.replay import ReplayBatch
from rlgen.dqn.run import StartPoint, build_run, save_run
from rlgen.dqn.schedules import epsilon_at
from rlgen.dqn.train import cpu_threads, finish_run
from rlgen.envs import get_spec
from rlgen.errors import InputError
from rlgen.stats import GroupSummary
from rlgen.training import (
    GracefulInterrupt,
    ProgressBar,
    RunLogger,
    TrainResult,
    resolve_device,
    set_deterministic,
    torch_threads,
)
from rlgen.training.optim import clip_grad_norm_rows
from rlgen.training.stacked import (
    StackedModules,
    optimizer_state_row,
    stack_optimizer_states,
)

GROUP_FILE = "group.json"


@dataclass
class GroupResult:
    group_dir: Path
    runs: list[TrainResult]
    summary: GroupSummary | None  # None when interrupted or without a final evaluation
    interrupted: bool
    wall_seconds: float


def check_batchable(configs: Sequence[DQNConfig]) -> None:
    """Refuse, before any step, what the batched loop cannot train the way a single run would."""
    first = to_dict(dataclasses.replace(configs[0], seed=0))
    for c in configs[1:]:
        if to_dict(dataclasses.replace(c, seed=0)) != first:
            raise InputError("--seeds trains copies of one config that differ only in their seed")
    config = configs[0]
    problems = []
    if is_sequence_config(config):
        problems.append(f"backbone.kind={config.backbone.kind} (memory Q-networks train one seed per process)")
    if config.backbone.dropout > 0:
        problems.append(f"backbone.dropout={config.backbone.dropout} (set it to 0)")
    if config.compile:
        problems.append("compile=true (set compile=false)")
    if config.precision != "fp32":
        problems.append(f"precision={config.precision} (set precision=fp32)")
    if problems:
        raise InputError(f"--seeds cannot batch {'; '.join(problems)}; drop --seeds to train one seed at a time")


def train_seeds(
    configs: Sequence[DQNConfig],
    *,
    device: str = "auto",
    logdir: str | Path = "runs",
    resume: str | Path | None = None,
    progress: bool = True,
) -> GroupResult:
    """Train one run per config (the same config with different seeds) as one batch.

    ``resume``: a group directory written by an earlier ``train_seeds``; every seed continues.
    Ctrl-C or SIGTERM stops all seeds at the same step, each saving its checkpoint.
    """
    check_batchable(configs)
    torch_device = resolve_device(device)
    with torch_threads(cpu_threads(configs[0], torch_device)), GracefulInterrupt() as interrupt:
        return _train(list(configs), torch_device, Path(logdir), resume, progress, interrupt)


def _train(configs: list[DQNConfig], device: torch.device, logdir: Path, resume: str | Path | None,
           progress: bool, interrupt: GracefulInterrupt) -> GroupResult:
    start_time = time.perf_counter()
    config, seeds = configs[0], [c.seed for c in configs]
    set_deterministic(config.deterministic)
    group = GroupLayout.resumed(Path(resume)) if resume is not None else GroupLayout.new(logdir, config, seeds)
    built = [build_run(c, device, logdir=group.dir, resume=group.dir / name if resume is not None else None,
                       run_name=name, progress=False) for c, name in zip(configs, group.runs)]
    runs = [run for run, _ in built]
    start = check_same_start([s for _, s in built], group.dir)
    group.write(config, seeds)
    num_seeds, num_envs = len(runs), config.num_envs

    # -- the batch: stacked online and target networks, one optimizer over the stacked tensors --------
    q = StackedModules([r.q_net for r in runs])
    target = StackedModules([r.target_net for r in runs], requires_grad=False)
    optimizer, lr_schedule, steps_per_phase = make_optimization(config, q.parameters())
    if resume is not None:
        optimizer.load_state_dict(stack_optimizer_states([r.optimizer for r in runs]))
        lr_schedule.load_state_dict(runs[0].lr_schedule.state_dict())
    td_loss = batched_td_loss(q, target, runs[0].td_loss)
    loss_sums, q_sums = torch.zeros(num_seeds, device=device), torch.zeros(num_seeds, device=device)
    for i, run in enumerate(runs):
        run.report.share_sums(loss_sums[i], q_sums[i])
        run.report.reset_clock(start.global_step)

    obs = [s.obs for _, s in built]
    global_step, update_step, learn_after = start.global_step, start.update_step, start.learn_after
    next_eval = (global_step // config.eval_freq + 1) * config.eval_freq if config.eval_freq else None
    next_ckpt = (global_step // config.checkpoint_freq + 1) * config.checkpoint_freq if config.checkpoint_freq else None
    vector_step = global_step // num_envs
    target_every = max(config.target_update_interval // num_envs, 1)
    bar = ProgressBar(config.total_timesteps * num_seeds, desc=f"dqn {config.env_id} x{num_seeds} seeds",
                      unit="step", disable=not progress)
    bar.update(global_step * num_seeds)
    interrupted = False

    def write_back() -> None:
        """Every seed's module, optimizer and schedule := its rows of the batch (before saving or evaluating)."""
        for i, run in enumerate(runs):
            q.write_back(i, run.q_net)
            target.write_back(i, run.target_net)
            run.optimizer.load_state_dict(optimizer_state_row(optimizer, i, num_seeds))
            run.lr_schedule.load_state_dict(lr_schedule.state_dict())

    while global_step < config.total_timesteps:
        # -- act: one forward for all seeds, then each seed's exploration and environments ----------
        epsilon = epsilon_at(config, global_step)
        greedy = greedy_actions(q, obs, device) if epsilon < 1.0 else [None] * num_seeds
        global_step += num_envs
        vector_step += 1
        for i, run in enumerate(runs):
            with run.run_rng.active():
                actions = run.actor.act(obs[i], epsilon, run.rng, greedy=greedy[i])
                next_obs, rewards, terminations, truncations, infos = run.envs.step(actions)
                run.buffer.add(actions, rewards, terminations, truncations, next_obs, run.actor.autoreset, None)
                run.actor.observe(terminations, truncations)
                obs[i] = next_obs
                if run.report.episodes(infos, global_step) and run.best is not None:
                    run.best.observe(run.report.recent_returns, q.row(i), global_step)

        # -- learn: each seed samples its own replay; one loss, backward and step for all ------------
        if global_step > learn_after and vector_step % config.train_freq == 0:
            for _ in range(steps_per_phase):
                beta = config.per_beta0 + (1.0 - config.per_beta0) * min(1.0, global_step / config.total_timesteps)
                batches = [run.buffer.sample(config.batch_size, run.rng, beta=beta) for run in runs]
                loss, priorities, q_mean = td_loss(batches)  # (N,), (N, B), (N,)
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()  # the seeds share no parameter: each row gets its own gradient
                if config.max_grad_norm:
                    clip_grad_norm_rows(q.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_schedule.step()
                update_step += 1
                if config.prioritized:
                    for run, batch, p in zip(runs, batches, priorities.float().cpu().numpy()):
                        run.buffer.update_priorities(batch.indices, p)
                loss_sums += loss.detach()
                q_sums += q_mean
                for run in runs:
                    run.report.count += 1
        if vector_step % target_every == 0:
            update_target(q.parameters(), target.parameters(), config.tau)

        # -- report --------------------------------------------------------------------------------
        for run in runs:
            run.report.maybe_log(global_step, epsilon, optimizer.param_groups[0]["lr"])
        if next_eval is not None and global_step >= next_eval:
            next_eval += config.eval_freq
            for i, run in enumerate(runs):
                q.write_back(i, run.q_net)
                mean, _ = evaluate_policy(run.q_net, config.env_id, config.eval_during_episodes,
                                          seed=run.config.seed + 10_000, device=device)
                run.logger.scalar("eval/episodic_return", mean, global_step)
        if next_ckpt is not None and global_step >= next_ckpt:
            next_ckpt += config.checkpoint_freq
            write_back()
            for run in runs:
                with run.run_rng.active():
                    save_run(run, global_step, update_step)
        recent = [np.mean(r.report.recent_returns) for r in runs if r.report.recent_returns]
        bar.update(num_envs * num_seeds, **({"ret": float(np.mean(recent))} if recent else {}))
        if interrupt.requested:
            interrupted = True
            break

    bar.close()
    write_back()
    results = [finish_run(run, global_step, update_step, interrupted, start_time) for run in runs]
    summary = None
    if not interrupted and config.eval_episodes > 0:
        summary = group.summarize(config.env_id, seeds, [r.eval_mean for r in results], global_step)
    return GroupResult(group.dir, results, summary, interrupted, time.perf_counter() - start_time)


def greedy_actions(q: StackedModules, obs: list[np.ndarray], device: torch.device) -> np.ndarray:
    """(N, E) greedy actions of every seed's Q-network on its own observations, in one forward."""
    with torch.no_grad():
        return q(torch.as_tensor(np.stack(obs), device=device)).argmax(dim=-1).cpu().numpy()


def batched_td_loss(q: StackedModules, target: StackedModules, td_loss):
    """The single-run TD loss (``rlgen.dqn.losses``) vmapped over seeds: a list of each seed's
    sampled batch in, (loss (N,), priorities (N, B), mean Q (N,)) out."""

    def one_seed(params, target_params, buffers, target_buffers, obs, actions, returns, next_obs, discounts, weights):
        batch = ReplayBatch(obs, actions, returns, next_obs, discounts, weights, None)
        out = td_loss(q.functional(params, buffers), target.functional(target_params, target_buffers), batch)
        return out.loss, out.priorities, out.q_mean

    batched = torch.func.vmap(one_seed)

    def loss(batches: list[ReplayBatch]):
        fields = [torch.stack([getattr(b, name) for b in batches]) for name in
                  ("obs", "actions", "returns", "next_obs", "discounts", "weights")]
        return batched(q.params, target.params, q.buffers, target.buffers, *fields)

    return loss


def check_same_start(starts: list[StartPoint], group_dir: Path) -> StartPoint:
    """All seeds of a batch continue from the same step (they were saved together)."""
    steps = {(s.global_step, s.update_step, s.learn_after) for s in starts}
    if len(steps) > 1:
        raise InputError(f"the seeds in {group_dir} were saved at different steps "
                         f"({sorted(s.global_step for s in starts)}); resume each with --resume SEED_DIR")
    return starts[0]


@dataclass
class GroupLayout:
    """A group directory: ``group.json`` (env, seeds, the run directory of each) and one run directory per seed."""

    dir: Path
    runs: list[str]

    @classmethod
    def new(cls, logdir: Path, config: DQNConfig, seeds: list[int]) -> GroupLayout:
        name = f"{config.env_id.replace('/', '-')}__dqn__seeds{seeds[0]}-{seeds[-1]}__{int(time.time())}"
        group_dir = logdir / name
        suffix = 1
        while group_dir.exists():
            group_dir, suffix = logdir / f"{name}_{suffix}", suffix + 1
        return cls(group_dir, [f"seed-{s}" for s in seeds])

    @classmethod
    def resumed(cls, group_dir: Path) -> GroupLayout:
        info = read_group(group_dir)
        return cls(group_dir, info["runs"])

    def write(self, config: DQNConfig, seeds: list[int]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        info = {"algo": "dqn", "env_id": config.env_id, "seeds": seeds, "runs": self.runs}
        (self.dir / GROUP_FILE).write_text(json.dumps(info, indent=2) + "\n")

    def summarize(self, env_id: str, seeds: list[int], returns: list[float], step: int) -> GroupSummary:
        """The group's summary: ``summary.json`` and ``group/*`` in TensorBoard (the group directory's events)."""
        summary = GroupSummary.of(env_id, seeds, returns, get_spec(env_id).solved_threshold)
        summary.write(self.dir / "summary.json")
        with RunLogger(self.dir.parent, env_id, "dqn", seeds[0], {"env_id": env_id, "seeds": seeds},
                       run_name=self.dir.name) as logger:
            summary.log(logger, step)
        return summary


def is_group(path: str | Path) -> bool:
    return (Path(path) / GROUP_FILE).is_file()


def read_group(group_dir: str | Path) -> dict:
    """``group.json`` of a group directory, checked."""
    group_dir = Path(group_dir)
    file = group_dir / GROUP_FILE
    try:
        info = json.loads(file.read_text())
    except FileNotFoundError:
        raise InputError(f"{group_dir} is not a group of seeds (no {GROUP_FILE}); pass a directory written by "
                         f"`rlgen train-dqn ENV --seeds N`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{file} is not valid JSON ({exc}); it was not written by rlgen or was altered") from None
    runs = info.get("runs") if isinstance(info, dict) else None
    if not (isinstance(runs, list) and runs and all(isinstance(r, str) and "/" not in r and r not in ("", ".", "..")
                                                    for r in runs)):
        raise InputError(f"{file}: 'runs' must list the seed run directories' names; the file was altered")
    missing = [r for r in runs if not (group_dir / r).is_dir()]
    if missing:
        raise InputError(f"{group_dir}: seed run directories {', '.join(missing)} are missing")
    return info
