"""What the many-seeds loops of DQN and PQN share (``--seeds N``): the group directory, the
batch of stacked Q-networks with its one optimizer, writing rows back into each seed's run
before it saves or evaluates, and the group's summary.

Each seed is a whole ``QRun`` (``rlgen.dqn.run``) in its own run directory under the group's;
the loops (``rlgen.dqn.seeds``, ``rlgen.pqn.seeds``) batch only the arithmetic.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlgen.config import to_dict
from rlgen.dqn.recurrent_networks import is_sequence_config
from rlgen.dqn.resume import algo_of
from rlgen.dqn.evaluations import make_evaluations
from rlgen.dqn.run import QRun, StartPoint, build_run, save_run
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


def check_batchable(configs: Sequence) -> None:
    """Refuse, before any step, what a batched loop cannot train the way a single run would."""
    first = to_dict(dataclasses.replace(configs[0], seed=0))
    if any(to_dict(dataclasses.replace(c, seed=0)) != first for c in configs[1:]):
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
    if config.transfer.init_from:
        problems.append("transfer.init_from (the stacked optimizer knows no frozen or slower part)")
    if problems:
        raise InputError(f"--seeds cannot batch {'; '.join(problems)}; drop --seeds to train one seed at a time")


def run_group(loop, configs: Sequence, *, device: str, logdir: str | Path, resume: str | Path | None,
              progress: bool, on_eval: EvalHook | None = None) -> GroupResult:
    """Check the configs, then run ``loop(group, interrupt)`` with the run's CPU threads and Ctrl-C / SIGTERM
    handling (one stop request stops every seed at the same step)."""
    check_batchable(configs)
    torch_device = resolve_device(device)
    with torch_threads(cpu_threads(configs[0], torch_device)), GracefulInterrupt() as interrupt:
        group = SeedGroup.open(list(configs), torch_device, Path(logdir), resume, progress)
        group.on_eval = on_eval
        evaluations = make_evaluations(configs[0], torch_device, on_eval)  # one worker for every seed
        for run in group.runs:
            run.evaluations = evaluations
        return loop(group, interrupt)


# Called with (global_step, every seed's evaluation return) after each evaluation during training
# (eval_freq); returning True stops the group there, as a stop request would (a pruned tuning trial).
EvalHook = Callable[[int, list[float]], bool]


@dataclass
class SeedGroup:
    """The seeds' runs, their stacked networks and the one optimizer and LR schedule over them."""

    layout: GroupLayout
    runs: list[QRun]
    start: StartPoint  # where every seed's loop starts (they are saved together)
    obs: list[np.ndarray]  # each seed's current observations
    q: StackedModules
    target: StackedModules | None  # DQN's target networks; None for PQN
    optimizer: torch.optim.Optimizer
    lr_schedule: torch.optim.lr_scheduler.LRScheduler
    loss_sums: torch.Tensor  # (N,): every seed's TrainingReport accumulates into its row
    q_sums: torch.Tensor
    bar: ProgressBar
    start_time: float
    on_eval: EvalHook | None = None

    @classmethod
    def open(cls, configs: list, device: torch.device, logdir: Path, resume: str | Path | None,
             progress: bool) -> SeedGroup:
        start_time = time.perf_counter()
        config, seeds = configs[0], [c.seed for c in configs]
        algo = algo_of(config)
        set_deterministic(config.deterministic)
        layout = GroupLayout.resumed(Path(resume)) if resume is not None else GroupLayout.new(logdir, config, seeds)
        built = [build_run(c, device, logdir=layout.dir, resume=layout.dir / name if resume is not None else None,
                           run_name=name, progress=False) for c, name in zip(configs, layout.runs)]
        runs = [run for run, _ in built]
        start = check_same_start([s for _, s in built], layout.dir)
        layout.write(algo, config, seeds)

        q = StackedModules([r.q_net for r in runs])
        target = None if runs[0].target_net is None else StackedModules([r.target_net for r in runs], requires_grad=False)
        if algo == "dqn":
            from rlgen.dqn.learning import make_optimization as optimization
        else:
            from rlgen.pqn.train import make_pqn_optimization as optimization
        optimizer, lr_schedule, _ = optimization(config, q.parameters())
        if resume is not None:
            optimizer.load_state_dict(stack_optimizer_states([r.optimizer for r in runs]))
            lr_schedule.load_state_dict(runs[0].lr_schedule.state_dict())
        loss_sums, q_sums = torch.zeros(len(runs), device=device), torch.zeros(len(runs), device=device)
        for i, run in enumerate(runs):
            run.report.share_sums(loss_sums[i], q_sums[i])
            run.report.reset_clock(start.global_step)
        bar = ProgressBar(config.total_timesteps * len(runs), desc=f"{algo} {config.env_id} x{len(runs)} seeds",
                          unit="step", disable=not progress)
        bar.update(start.global_step * len(runs))
        return cls(layout, runs, start, [s.obs for _, s in built], q, target, optimizer, lr_schedule, loss_sums,
                   q_sums, bar, start_time)

    def greedy_actions(self) -> np.ndarray:
        """(N, E) greedy actions and (N, E) max Q of every seed's network on its own observations, one forward."""
        with torch.no_grad():
            q = self.q(torch.as_tensor(np.stack(self.obs), device=self.runs[0].device)).float()
        return q.argmax(dim=-1).cpu().numpy(), q.max(dim=-1).values

    def gradient_step(self, loss: torch.Tensor, max_grad_norm: float) -> None:
        """One optimizer step for every seed from their losses (N,): the seeds share no parameter, so
        the sum's gradient is each seed's own in its rows; each seed is clipped by its own norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        if max_grad_norm:
            clip_grad_norm_rows(self.q.parameters(), max_grad_norm)
        self.optimizer.step()
        self.lr_schedule.step()

    def counted_update(self, loss: torch.Tensor, q_mean: torch.Tensor) -> None:
        """Every seed's report takes its row of one batched update's losses and mean Q."""
        self.loss_sums += loss.detach()
        self.q_sums += q_mean.detach()
        for run in self.runs:
            run.report.count += 1

    def log(self, global_step: int, epsilon: float) -> None:
        """Every seed's log window; the bar's mean return when a window closes (not every step)."""
        window = self.runs[0].report.next_log
        for run in self.runs:
            run.report.maybe_log(global_step, epsilon, self.optimizer.param_groups[0]["lr"])
        if self.runs[0].report.next_log != window:
            recent = [np.mean(r.report.recent_returns) for r in self.runs if r.report.recent_returns]
            if recent:
                self.bar.update(0, ret=float(np.mean(recent)))

    def write_back(self) -> None:
        """Every seed's module, optimizer and schedule := its rows of the batch (before saving or evaluating)."""
        for i, run in enumerate(self.runs):
            self.q.write_back(i, run.q_net)
            if self.target is not None:
                self.target.write_back(i, run.target_net)
            run.optimizer.load_state_dict(optimizer_state_row(self.optimizer, i, len(self.runs)))
            run.lr_schedule.load_state_dict(self.lr_schedule.state_dict())

    def evaluate(self, global_step: int) -> bool:
        """The evaluation during training, of every seed (``eval_freq``); True if ``on_eval`` asks to stop."""
        for i, run in enumerate(self.runs):
            self.q.write_back(i, run.q_net)  # each seed's own network, evaluated as its single run would be
            run.evaluations.submit(run, global_step)
        return bool(self.on_eval is not None and self.on_eval(global_step, self.runs[0].evaluations.drain()))

    def save(self, global_step: int, update_step: int) -> None:
        self.write_back()
        for run in self.runs:
            with run.run_rng.active():
                save_run(run, global_step, update_step)

    def finish(self, global_step: int, update_step: int, interrupted: bool) -> GroupResult:
        """Each seed finishes as its single run would (keep_best, save, then evaluate); then the summary."""
        self.bar.close()
        self.write_back()
        results = [finish_run(run, global_step, update_step, interrupted, self.start_time) for run in self.runs]
        config, summary = self.runs[0].config, None
        if not interrupted and config.eval_episodes > 0:
            seeds = [r.config.seed for r in self.runs]
            summary = self.layout.summarize(algo_of(config), config.env_id, seeds, [r.eval_mean for r in results],
                                            global_step)
        return GroupResult(self.layout.dir, results, summary, interrupted, time.perf_counter() - self.start_time)


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
    def new(cls, logdir: Path, config, seeds: list[int]) -> GroupLayout:
        name = f"{config.env_id.replace('/', '-')}__{algo_of(config)}__seeds{seeds[0]}-{seeds[-1]}__{int(time.time())}"
        group_dir, suffix = logdir / name, 1
        while group_dir.exists():
            group_dir, suffix = logdir / f"{name}_{suffix}", suffix + 1
        return cls(group_dir, [f"seed-{s}" for s in seeds])

    @classmethod
    def resumed(cls, group_dir: Path) -> GroupLayout:
        return cls(group_dir, read_group(group_dir)["runs"])

    def write(self, algo: str, config, seeds: list[int]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        info = {"algo": algo, "env_id": config.env_id, "seeds": seeds, "runs": self.runs}
        (self.dir / GROUP_FILE).write_text(json.dumps(info, indent=2) + "\n")

    def summarize(self, algo: str, env_id: str, seeds: list[int], returns: list[float], step: int) -> GroupSummary:
        """The group's summary: ``summary.json`` and ``group/*`` in TensorBoard (the group directory's events)."""
        summary = GroupSummary.of(env_id, seeds, returns, get_spec(env_id).solved_threshold)
        summary.write(self.dir / "summary.json")
        with RunLogger(self.dir.parent, env_id, algo, seeds[0], {"env_id": env_id, "seeds": seeds},
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
