"""Evaluations during training (every ``eval_freq`` steps), played inline or beside the loop.

A run trained on one CPU thread leaves the machine's other cores idle, and its evaluations
(``eval_during_episodes`` greedy episodes each, outside the training budget) stop training
while they play: 20 evaluations of a solved CartPole are ~15% of the whole process. So
``BackgroundEvaluations`` hands each one to a worker process (``rlgen.dqn.eval_worker``) on
another core and training goes on. The weights are copied when the evaluation is asked for,
the worker plays exactly what the inline evaluation plays, and results are taken in order,
so the logged scores, the network keep_best keeps and every checkpoint are the same as
inline (tested). Every submitted evaluation is taken before a checkpoint is written.
``InlineEvaluations`` plays them in the loop: on GPU, with several threads, when a hook
needs each score at once (tuning's pruner), or with ``eval_in_background=false``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import weakref
from collections import deque
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import rlgen
from rlgen.config import to_dict
from rlgen.dqn.evaluate import evaluate_policy

log = logging.getLogger(__name__)


def evaluation_score(run, weights: dict[str, torch.Tensor] | None = None) -> float:
    """The mean return of ``eval_during_episodes`` greedy episodes on the run's evaluation seed, of
    the run's Q-network (or of a copy of it holding ``weights``)."""
    config, q_net = run.config, run.q_net
    if weights is not None:
        q_net = copy.deepcopy(q_net)
        q_net.load_state_dict(weights)
    mean, _ = evaluate_policy(q_net, config.env_id, config.eval_during_episodes, seed=config.seed + 10_000,
                              device=run.device)
    return mean


def record_evaluation(run, global_step: int, mean: float, weights: dict[str, torch.Tensor] | None = None) -> None:
    """Log an evaluation during training as ``eval/episodic_return`` and offer its network (``weights``, or
    the run's current one) to keep_best when it keeps the best evaluated network (``keep_best_by=eval``)."""
    run.logger.scalar("eval/episodic_return", mean, global_step)
    run.last_eval = (global_step, mean)
    if run.best is not None and run.config.keep_best_by == "eval":
        run.best.observe_state(mean, weights if weights is not None else run.q_net.state_dict(), global_step)


class InlineEvaluations:
    """Each evaluation played when it is asked for."""

    def __init__(self) -> None:
        self._means: list[float] = []

    def submit(self, run, global_step: int) -> None:
        self._taken(run, global_step, evaluation_score(run))

    def drain(self) -> list[float]:
        """The scores of the evaluations submitted since the last ``drain``, in order."""
        means, self._means = self._means, []
        return means

    def close(self) -> None:
        pass

    def _taken(self, run, global_step: int, mean: float, weights: dict[str, torch.Tensor] | None = None) -> None:
        record_evaluation(run, global_step, mean, weights)
        self._means.append(mean)


class BackgroundEvaluations(InlineEvaluations):
    """Evaluations played by one worker process while the loop trains on (one worker for all the
    seeds of a group). The worker starts with the first evaluation. If it dies (killed, or a bug:
    its traceback is on stderr), the pending evaluations and all later ones are played inline,
    with a warning: a run never stops, or loses its work, for its evaluations' sake."""

    def __init__(self) -> None:
        super().__init__()
        self._proc: subprocess.Popen | None = None
        self._dir: str | None = None
        self._pending: deque[tuple[Any, int, dict[str, torch.Tensor]]] = deque()
        self._count = 0
        self._buffer = b""
        self._failed = False

    def submit(self, run, global_step: int) -> None:
        if self._failed:
            return super().submit(run, global_step)
        weights = {k: v.detach().to("cpu", copy=True) for k, v in run.q_net.state_dict().items()}
        if self._proc is None:
            self._start()
        self._count += 1
        path = os.path.join(self._dir, f"weights-{self._count}.safetensors")
        save_file({k: v.contiguous() for k, v in weights.items()}, path)
        config = run.config
        request = {"algo": run.algo, "config": to_dict(config), "obs_shape": list(run.obs_space.shape),
                   "obs_dtype": str(run.obs_space.dtype), "num_actions": run.num_actions,
                   "episodes": config.eval_during_episodes, "seed": config.seed + 10_000, "weights": path}
        self._pending.append((run, global_step, weights))
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
        except BrokenPipeError:  # the worker is gone
            self._fall_back()
            return
        self._take(block=False)

    def drain(self) -> list[float]:
        """Wait for every submitted evaluation; their scores since the last ``drain``, in order."""
        self._take(block=True)
        return super().drain()

    def close(self) -> None:
        """Take what is pending, then let the worker exit (its stdin closes; not waited for: its
        interpreter's shutdown costs half a second and needs nothing from us) and remove its files."""
        if self._proc is None:
            return
        try:
            self._take(block=True)
        finally:
            proc, self._proc = self._proc, None
            if proc is not None:
                proc.stdin.close()
                shutil.rmtree(self._dir, ignore_errors=True)

    def _start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="rlgen-eval-")
        weakref.finalize(self, shutil.rmtree, self._dir, True)  # also if the run ends in an exception
        # The worker imports the rlgen this process runs (a source checkout too), on one thread.
        package_root = str(Path(rlgen.__file__).resolve().parent.parent)
        python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}
        # Its own session: Ctrl-C in the terminal stops the training process (which then takes the
        # pending evaluations and saves), not the worker.
        self._proc = subprocess.Popen([sys.executable, "-m", "rlgen.dqn.eval_worker"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env, start_new_session=True, bufsize=0)

    def _take(self, block: bool) -> None:
        """Record the evaluations the worker has answered (all pending ones when ``block``)."""
        fd = self._proc.stdout.fileno() if self._proc is not None else None
        while self._pending:
            if b"\n" not in self._buffer:
                if not block and not select.select([fd], [], [], 0)[0]:
                    return
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._fall_back()
                    return
                self._buffer += chunk
                continue
            line, self._buffer = self._buffer.split(b"\n", 1)
            run, global_step, weights = self._pending.popleft()
            self._taken(run, global_step, float(json.loads(line)["mean"]), weights)

    def _fall_back(self) -> None:
        code = self._proc.wait()
        log.warning("the evaluation worker (rlgen.dqn.eval_worker) exited with code %s; evaluating inside the "
                    "training process from now on (set eval_in_background=false to do so from the start)", code)
        self._failed, self._proc = True, None
        shutil.rmtree(self._dir, ignore_errors=True)
        while self._pending:
            run, global_step, weights = self._pending.popleft()
            self._taken(run, global_step, evaluation_score(run, weights), weights)


def free_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_evaluations(config, device: torch.device, hook) -> InlineEvaluations | BackgroundEvaluations:
    """Background evaluations when they cannot slow training or change what a hook sees: the run
    evaluates during training and trains on one CPU thread (call it inside the run's
    ``torch_threads``), a second core is free, and no ``hook`` needs each score before the loop
    goes on."""
    background = (config.eval_in_background and config.eval_freq > 0 and hook is None and device.type == "cpu"
                  and torch.get_num_threads() == 1 and free_cores() >= 2)
    return BackgroundEvaluations() if background else InlineEvaluations()
