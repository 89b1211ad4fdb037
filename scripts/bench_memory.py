"""Memory benchmark: MLP vs LSTM vs GRU vs transformer vs TCN Q-networks on partially observable tasks.

Each (task, network, seed) trains from its preset in agents/dqn.yml (``ENV_ID``
for the LSTM, ``ENV_ID-gru`` / ``-transformer`` / ``-tcn`` / ``-mlp`` for the others) with
a deterministic evaluation every ``--eval-every`` steps, logged to TensorBoard
under ``--logdir``. The learning curves (mean over seeds, shaded min..max) go
into one PNG; the final 100-episode evaluations are printed as a markdown table.

    python scripts/bench_memory.py --seeds 3 --jobs 2
    tensorboard --logdir runs/bench_memory
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

TASKS = {"cartpole": "rlgen/CartPoleNoVel-v0", "tmaze": "rlgen/TMaze-L30-v0", "tmaze50": "rlgen/TMaze-L50-v0"}
KINDS = ("mlp", "lstm", "gru", "transformer", "tcn")


def preset_name(env_id: str, kind: str) -> str:
    return env_id if kind == "lstm" else f"{env_id}-{kind}"


def run_one(env_id: str, kind: str, seed: int, logdir: str, eval_every: int, total_steps: int | None,
            overrides: tuple[str, ...] = ()) -> dict:
    """Train one agent; returns its final evaluation, wall time and evaluation curve."""
    import torch

    from rlgen.dqn import make_config
    from rlgen.dqn.agent import train_function

    torch.set_num_threads(1)
    settings = [f"eval_freq={eval_every}", "eval_during_episodes=20", "eval_episodes=100", *overrides]
    config = make_config(env_id, preset_name(env_id, kind), seed=seed, total_timesteps=total_steps,
                         overrides=settings)
    start = time.perf_counter()
    result = train_function(config)(config, device="cpu", logdir=Path(logdir) / env_id.replace("/", "-") / kind,
                                    progress=False)
    return {
        "env_id": env_id, "kind": kind, "seed": seed, "eval": result.eval_mean, "eval_std": result.eval_std,
        "wall": time.perf_counter() - start, "steps": result.global_step, "run_dir": str(result.run_dir),
        "curve": read_curve(result.run_dir),
    }


def read_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, mean return) of the evaluations during training, from the run's TensorBoard file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    points = {e.step: e.value for e in events.Scalars("eval/episodic_return")}
    return sorted(points.items())


def plot_curves(ax, runs: list[dict], colour: str, label: str) -> None:
    """The mean evaluation curve of ``runs`` (their common steps), min..max shaded."""
    import numpy as np

    steps = sorted(set.intersection(*(set(s for s, _ in r["curve"]) for r in runs)))
    values = np.array([[dict(r["curve"])[s] for s in steps] for r in runs])  # (seeds, points)
    ax.plot(steps, values.mean(axis=0), color=colour, label=f"{label} ({len(runs)} seeds)")
    ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.15)


def label_axis(ax) -> None:
    ax.set_xlabel("environment steps")
    ax.set_ylabel("deterministic eval return (20 episodes)")
    ax.legend(loc="best", fontsize=8)


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def plot(results: list[dict], tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlgen.envs import get_spec

    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    colours = {"mlp": "tab:gray", "lstm": "tab:blue", "gru": "tab:green", "transformer": "tab:red", "tcn": "tab:purple"}
    for ax, env_id in zip(axes[0], tasks):
        spec = get_spec(env_id)
        for kind in KINDS:
            runs = [r for r in results if r["env_id"] == env_id and r["kind"] == kind and r["curve"]]
            if not runs:
                continue
            plot_curves(ax, runs, colours[kind], kind)
        if spec.solved_threshold is not None:
            ax.axhline(spec.solved_threshold, color="black", linestyle="--", linewidth=0.8, label="solved")
        if spec.random_score is not None:
            ax.axhline(spec.random_score, color="black", linestyle=":", linewidth=0.8, label="random / chance")
        ax.set_title(env_id)
        label_axis(ax)
    save_figure(fig, path)


def train_all(args: argparse.Namespace) -> list[dict]:
    jobs = [(TASKS[t], kind, seed, args.logdir, args.eval_every, args.total_steps, tuple(args.overrides))
            for t in args.tasks for kind in args.kinds for seed in range(args.seeds)]
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for result in pool.map(run_one, *zip(*jobs)):
            results.append(result)
            print(f"{result['env_id']:<24} {result['kind']:<11} seed {result['seed']}: eval "
                  f"{result['eval']:.2f} +/- {result['eval_std']:.2f} in {result['wall']:.0f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--jobs", type=int, default=2, help="runs trained side by side (one CPU thread each)")
    parser.add_argument("--eval-every", type=int, default=5000, help="env steps between curve evaluations")
    parser.add_argument("--total-steps", type=int, default=None, help="override the presets' budgets")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override applied to every run (repeatable)")
    parser.add_argument("--logdir", default="runs/bench_memory")
    parser.add_argument("--out", default="docs/memory_learning_curves.png")
    parser.add_argument("--results", default=None, help="also write the raw results as JSON here")
    parser.add_argument("--from-results", nargs="+", default=None, metavar="JSON",
                        help="train nothing: plot and tabulate saved --results files (later ones replace "
                             "earlier runs of the same task, network and seed)")
    args = parser.parse_args()

    if args.from_results:
        merged = {}
        for path in args.from_results:
            for r in json.loads(Path(path).read_text()):
                merged[r["env_id"], r["kind"], r["seed"]] = r
        results = list(merged.values())
    else:
        results = train_all(args)
    if args.results:
        Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    plot(results, [TASKS[t] for t in args.tasks], Path(args.out))

    print(f"\n| task | network | final eval per seed (100 episodes) | mean | solved | wall s / run |")
    print("|---|---|---|---|---|---|")
    from rlgen.envs import get_spec

    for task in args.tasks:
        env_id = TASKS[task]
        threshold = get_spec(env_id).solved_threshold
        for kind in args.kinds:
            runs = [r for r in results if r["env_id"] == env_id and r["kind"] == kind]
            if not runs:
                continue
            evals = [r["eval"] for r in runs]
            solved = sum(e >= threshold for e in evals) if threshold is not None else "-"
            print(f"| {env_id} | {kind} | {', '.join(f'{e:.2f}' for e in evals)} | {statistics.mean(evals):.2f} "
                  f"| {solved}/{len(runs)} | {statistics.mean(r['wall'] for r in runs):.0f} |")
    print(f"\ncurves: {args.out}; TensorBoard: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
