"""``rlgen tune``: an Optuna study over a search space, one run directory per trial.

Q-learning trials train ``seeds_per_trial`` seeds as one batch (``--seeds``'s machinery) and
score the mean of their final evaluations; the evaluations the loop runs during training
(``eval_freq``) are reported to the pruner through the loop's evaluation hook, so a median or
successive-halving pruner stops a poor trial early. Workers are separate processes sharing
the study through its storage (journal file or database), so trials never share seeds,
thread settings or signal handlers.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.errors import InputError, RlgenError
from rlgen.tune.space import Param, check_space, load_space, overrides_of
from rlgen.tune.storage import open_storage

RL_ALGOS = ("dqn", "pqn")
GENERATIVE = ("vae", "gan", "diffusion")  # scored by domain FID (lower is better)
JOURNAL = "studies.journal"  # LOGDIR/tune/studies.journal: every study of this logdir, unless --storage says otherwise
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "halving", "none")
SCORES = ("mean", "iqm", "lower-quartile")  # of the seeds' final evaluations


class TuneInterrupted(RlgenError):
    """Ctrl-C / SIGTERM stopped a trial; the study keeps every finished trial."""


@dataclass
class TuneSpec:
    """What every worker needs to run trials (plain values: it crosses process boundaries)."""

    algo: str
    task: str  # env id, or dataset name for a generative model
    space_file: str | None = None
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # --set, applied under the trial's values
    seed: int = 0
    seeds_per_trial: int = 1
    eval_freq: int | None = None  # None: a tenth of the budget when pruning
    pruner: str = "median"
    score: str = "mean"
    sampler: str = "tpe"
    sampler_seed: int | None = None
    device: str = "cpu"
    logdir: str = "runs"
    study_name: str = ""
    storage: str | None = None

    def __post_init__(self) -> None:
        if self.algo not in RL_ALGOS + GENERATIVE:
            raise InputError(f"rlgen tune {self.algo}: tune one of {', '.join(RL_ALGOS + GENERATIVE)}")
        if self.sampler not in SAMPLERS:
            raise InputError(f"--sampler {self.sampler}: use one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise InputError(f"--pruner {self.pruner}: use one of {', '.join(PRUNERS)}")
        if self.score not in SCORES:
            raise InputError(f"--score {self.score}: use one of {', '.join(SCORES)}")
        if self.seeds_per_trial < 1:
            raise InputError(f"--seeds-per-trial {self.seeds_per_trial} must be >= 1")
        self.study_name = self.study_name or f"{self.algo}-{self.task.replace('/', '-')}"

    @property
    def study_dir(self) -> Path:
        return Path(self.logdir) / "tune" / self.study_name

    def params(self) -> list[Param]:
        return load_space(self.algo, self.task, self.space_file)

    @property
    def generative(self) -> bool:
        return self.algo in GENERATIVE

    @property
    def direction(self) -> str:
        return "minimize" if self.generative else "maximize"

    def config(self, values: dict[str, Any]):
        """The config of a trial with these search-space values (checked like any config)."""
        if self.generative:
            from rlgen.config import apply_overrides
            from rlgen.generative.configs import make_config as make_generative_config

            config = make_generative_config(self.algo, self.task, self.preset, seed=self.seed)
            config = apply_overrides(config, {**self.overrides, **values})
            budget, freq = config.steps, "eval_interval"
        else:
            from rlgen.dqn.agent import make_config

            config = make_config(self.task, self.preset, overrides={**self.overrides, **values}, algo=self.algo,
                                 seed=self.seed)
            budget, freq = config.total_timesteps, "eval_freq"
        if self.eval_freq is not None:
            return dataclasses.replace(config, **{freq: self.eval_freq})
        if self.pruner != "none" and not getattr(config, freq):  # the pruner needs evaluations during training
            return dataclasses.replace(config, **{freq: max(1, budget // (5 if self.generative else 10))})
        return config

    def check(self) -> list[Param]:
        """Everything checkable before the first trial: the space against the config, batching."""
        base = self.config({})  # the preset and --set values alone, so their errors name themselves
        params = self.params()
        check_space(params, self.config)
        from rlgen.dqn.group import check_batchable

        if self.seeds_per_trial > 1 and not self.generative:
            check_batchable([base])
        return params


def make_sampler(spec: TuneSpec):
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.sampler_seed)
    return optuna.samplers.TPESampler(seed=spec.sampler_seed, n_startup_trials=5)


def make_pruner(spec: TuneSpec):
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def open_study(spec: TuneSpec, create: bool = True):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # rlgen prints what matters itself
    storage = open_storage(spec.storage, spec.study_dir.parent / JOURNAL, create=create)
    if not create:
        from rlgen.tune.storage import load_existing_study

        return load_existing_study(spec.study_name, storage, spec.storage or str(spec.study_dir.parent))
    study = optuna.create_study(study_name=spec.study_name, storage=storage, direction=spec.direction,
                                sampler=make_sampler(spec), pruner=make_pruner(spec), load_if_exists=True)
    if "fixed" not in study.user_attrs:  # what every trial shares, for --export-best
        study.set_user_attr("fixed", spec.overrides)
        study.set_user_attr("preset", spec.preset)
    return study


def objective(spec: TuneSpec, params: list[Param]):
    """The Optuna objective: a Q-learning trial's score over its seeds' final evaluations (``--score``),
    or a generative trial's mean domain FID over its seeds."""
    if spec.generative:
        return generative_objective(spec, params)
    import optuna

    def run_trial(trial: optuna.Trial) -> float:
        values = overrides_of(params, {p.name: p.suggest(trial) for p in params})
        config = spec.config(values)
        configs = [dataclasses.replace(config, seed=config.seed + i) for i in range(spec.seeds_per_trial)]
        pruned = False

        def on_eval(step: int, returns: list[float]) -> bool:
            nonlocal pruned
            trial.report(float(np.mean(returns)), step)
            pruned = trial.should_prune()
            return pruned

        logdir = spec.study_dir / f"trial-{trial.number}"
        if spec.seeds_per_trial > 1 or _batchable(config):
            train_seeds = _group_trainer(spec.algo)
            result = train_seeds(configs, device=spec.device, logdir=logdir, progress=False, on_eval=on_eval)
            runs, run_dir = result.runs, str(result.group_dir)
        else:
            from rlgen.dqn.agent import train_function

            runs = [train_function(config)(config, device=spec.device, logdir=logdir, progress=False,
                                           on_eval=on_eval)]
            run_dir = str(runs[0].run_dir)
        trial.set_user_attr("run_dir", run_dir)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if pruned:
            raise optuna.TrialPruned()
        if any(r.interrupted for r in runs):
            raise TuneInterrupted(f"trial {trial.number} was interrupted; run the same command again to go on "
                                  f"with study {spec.study_name!r} (finished trials are kept)")
        returns = [float(r.eval_mean) for r in runs]
        trial.set_user_attr("returns", returns)
        return score_of(returns, spec.score)

    return run_trial


def generative_objective(spec: TuneSpec, params: list[Param]):
    import optuna

    from rlgen.generative.configs import model_parts

    train = model_parts(spec.algo)[1]

    def run_trial(trial: optuna.Trial) -> float:
        values = overrides_of(params, {p.name: p.suggest(trial) for p in params})
        config = spec.config(values)
        pruned, scores = False, []
        logdir = spec.study_dir / f"trial-{trial.number}"
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        for i in range(spec.seeds_per_trial):
            def on_eval(step: int, metrics: dict[str, float], first: bool = i == 0) -> bool:
                nonlocal pruned
                if not first or "eval/fid" not in metrics:  # the first seed's curve is the one reported
                    return False
                trial.report(float(metrics["eval/fid"]), step)
                pruned = trial.should_prune()
                return pruned

            result = train(dataclasses.replace(config, seed=config.seed + i), logdir=logdir, device=spec.device,
                           progress=False, on_eval=on_eval)
            trial.set_user_attr("run_dir", str(result.run_dir))
            if pruned:
                raise optuna.TrialPruned()
            if result.interrupted:
                raise TuneInterrupted(f"trial {trial.number} was interrupted; run the same command again to go "
                                      f"on with study {spec.study_name!r} (finished trials are kept)")
            if "eval/fid" not in result.metrics:
                raise InputError(f"{spec.algo} runs report no eval/fid to tune on: set eval_samples > 0")
            scores.append(float(result.metrics["eval/fid"]))
        trial.set_user_attr("fids", scores)
        return float(np.mean(scores))

    return run_trial


def score_of(returns: list[float], score: str) -> float:
    """A trial's score: the mean, the interquartile mean, or (for robustness: the worst seeds
    decide) the mean of the lowest quarter of the seeds' returns."""
    from rlgen.stats import iqm

    if score == "iqm":
        return iqm(returns)
    if score == "lower-quartile":
        return float(np.sort(returns)[: max(1, len(returns) // 4)].mean())
    return float(np.mean(returns))


def _batchable(config) -> bool:
    from rlgen.dqn.group import check_batchable

    try:
        check_batchable([config])
    except InputError:
        return False
    return True


def _group_trainer(algo: str):
    if algo == "dqn":
        from rlgen.dqn.seeds import train_seeds
    else:
        from rlgen.pqn.seeds import train_seeds
    return train_seeds


def finished(study) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(t.state in states for t in study.get_trials(deepcopy=False))


def work(spec: TuneSpec, n_trials: int, timeout: float | None, on_trial=None) -> None:
    """One worker: run trials until the study has ``n_trials`` finished ones (all workers together)."""
    import optuna
    from optuna.study import MaxTrialsCallback

    params = spec.check()
    study = open_study(spec)
    callbacks = [MaxTrialsCallback(n_trials, states=(optuna.trial.TrialState.COMPLETE,
                                                     optuna.trial.TrialState.PRUNED))]
    if on_trial is not None:
        callbacks.append(lambda study, trial: on_trial(trial))
    if finished(study) >= n_trials:
        return
    study.optimize(objective(spec, params), timeout=timeout, callbacks=callbacks, catch=())


def worker_spec(spec: TuneSpec, index: int) -> TuneSpec:
    """Worker ``index``'s spec: with ``--sampler-seed S`` it samples from S + index (one seed for
    all would make every worker suggest the same trials)."""
    if spec.sampler_seed is None:
        return spec
    return dataclasses.replace(spec, sampler_seed=spec.sampler_seed + index)


def _worker_main(spec_dict: dict, n_trials: int, timeout: float | None) -> None:
    import torch

    torch.set_num_threads(1)
    work(TuneSpec(**spec_dict), n_trials, timeout)


def run_study(spec: TuneSpec, n_trials: int, timeout: float | None, n_workers: int, progress: bool) -> Any:
    """Run ``n_trials`` trials (``n_workers`` processes sharing the study); returns the study."""
    from rlgen.training import ProgressBar

    spec.check()
    study = open_study(spec)  # created (or found) once, before the workers start
    bar = ProgressBar(n_trials, desc=f"tune {spec.study_name}", unit="trial", disable=not progress)
    bar.update(min(finished(study), n_trials))
    if n_workers <= 1:
        def on_trial(trial):
            bar.update(1, best=_best_value(study))

        work(spec, n_trials, timeout, on_trial)
        bar.close()
        return study
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker_main, args=(dataclasses.asdict(worker_spec(spec, i)), n_trials, timeout))
               for i in range(n_workers)]
    for w in workers:
        w.start()
    done = finished(study)
    while any(w.is_alive() for w in workers):
        time.sleep(1.0)
        now = finished(study)
        if now > done:
            bar.update(now - done, best=_best_value(study))
            done = now
    bar.close()
    failed = [w.exitcode for w in workers if w.exitcode != 0]
    if failed:
        raise RlgenError(f"{len(failed)} of {n_workers} tuning workers exited with an error (codes {failed}); "
                         "their tracebacks are above")
    return study


def _best_value(study) -> float:
    try:
        return float(study.best_value)
    except ValueError:  # no finished trial yet
        return float("nan")
