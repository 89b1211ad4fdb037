"""Search the CartPole-v1 DQN preset for robustness over many seeds (Optuna TPE, seeds batched).

Each trial trains one config on ``--seeds`` seeds at once (``train_seeds``, the batch behind
``rlgen train-dqn --seeds N``) at the preset's 50,000-step budget and scores it by its worst
seeds, not its mean: the mean of the lowest quarter of the seeds' evaluations (plus the mean
as a small tie-breaker). Several worker processes share one study through Optuna's journal
file. The winner is then validated on fresh seeds with the real command,
``rlgen train-dqn CartPole-v1 --seeds 20 --seed 1000`` (see docs/benchmarks.md).

    python scripts/tune_cartpole_preset.py --journal /tmp/cartpole.journal --n-trials 20 &
    python scripts/tune_cartpole_preset.py --journal /tmp/cartpole.journal --n-trials 20
    python scripts/tune_cartpole_preset.py --journal /tmp/cartpole.journal --show
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import numpy as np
import optuna
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from rlgen.dqn import make_config
from rlgen.dqn.seeds import train_seeds


def suggest(trial: optuna.Trial) -> list[str]:
    """The search space, as ``--set`` overrides of the current preset."""
    hidden = trial.suggest_categorical("hidden", [64, 128, 256])
    return [
        f"learning_rate={trial.suggest_float('learning_rate', 5e-4, 4e-3, log=True)}",
        f"lr_schedule={trial.suggest_categorical('lr_schedule', ['cosine', 'linear', 'constant'])}",
        f"batch_size={trial.suggest_categorical('batch_size', [64, 128, 256])}",
        f"gradient_steps={trial.suggest_int('gradient_steps', 1, 2)}",
        f"target_update_interval={trial.suggest_categorical('target_update_interval', [200, 400, 800, 1600])}",
        f"n_step={trial.suggest_categorical('n_step', [1, 3, 5])}",
        f"exploration_fraction={trial.suggest_float('exploration_fraction', 0.05, 0.3)}",
        f"exploration_final_eps={trial.suggest_float('exploration_final_eps', 0.01, 0.1, log=True)}",
        f"keep_best_window={trial.suggest_categorical('keep_best_window', [10, 20, 50])}",
        f"learning_starts={trial.suggest_categorical('learning_starts', [500, 1000, 2000])}",
        f"backbone.hidden_sizes=[{hidden}, {hidden}]",
    ]


def robust_score(returns: list[float]) -> float:
    worst = np.sort(returns)[: max(1, len(returns) // 4)]
    return float(worst.mean() + 0.1 * np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journal", required=True, help="Optuna journal file shared by the workers")
    parser.add_argument("--study", default="cartpole-dqn-preset")
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=16, help="seeds per trial")
    parser.add_argument("--first-seed", type=int, default=100, help="tuning seeds: first-seed .. + seeds - 1")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--show", action="store_true", help="print the best trials and exit")
    args = parser.parse_args()
    storage = JournalStorage(JournalFileBackend(args.journal))
    study = optuna.create_study(study_name=args.study, storage=storage, direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=int(time.time()) % 10_000, n_startup_trials=8))
    if args.show:
        trials = sorted((t for t in study.trials if t.value is not None), key=lambda t: -t.value)
        for t in trials[:8]:
            print(f"trial {t.number}: score {t.value:.1f}, solved {t.user_attrs['solved']}/{args.seeds}, "
                  f"mean {t.user_attrs['mean']:.1f}, worst {t.user_attrs['worst']:.1f}, {t.user_attrs['wall']:.0f} s")
            print("   ", json.dumps(t.params))
        print(f"{len(study.trials)} trials")
        return
    torch.set_num_threads(1)

    def objective(trial: optuna.Trial) -> float:
        overrides = ["eval_episodes=%d" % args.eval_episodes, *suggest(trial)]
        base = make_config("CartPole-v1", overrides=overrides)
        configs = [dataclasses.replace(base, seed=args.first_seed + i) for i in range(args.seeds)]
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as logdir:
            result = train_seeds(configs, device="cpu", logdir=logdir, progress=False)
        returns = [r.eval_mean for r in result.runs]
        trial.set_user_attr("returns", returns)
        trial.set_user_attr("solved", int(sum(r >= 475 for r in returns)))
        trial.set_user_attr("mean", float(np.mean(returns)))
        trial.set_user_attr("worst", float(np.min(returns)))
        trial.set_user_attr("wall", time.perf_counter() - start)
        print(f"trial {trial.number}: solved {trial.user_attrs['solved']}/{args.seeds}, mean {np.mean(returns):.1f}, "
              f"worst {np.min(returns):.1f}, {trial.user_attrs['wall']:.0f} s  {trial.params}", flush=True)
        return robust_score(returns)

    if not study.trials:  # the current preset first, as the baseline every trial is compared with
        study.enqueue_trial({"learning_rate": 2.3e-3, "lr_schedule": "cosine", "batch_size": 128, "gradient_steps": 2,
                             "target_update_interval": 400, "n_step": 3, "exploration_fraction": 0.1,
                             "exploration_final_eps": 0.04, "keep_best_window": 20, "learning_starts": 1000,
                             "hidden": 128})
    study.optimize(objective, n_trials=args.n_trials)


if __name__ == "__main__":
    main()
