"""PQN on the five MinAtar games at the paper's 5M frames: wall time, final returns, learning curves.

One process per game and seed (``rlgen train-pqn GAME --seed S``, one torch thread), ``--jobs`` at a
time. For each run: wall seconds, the final return as the MinAtar paper measures it (mean of the
last 100 training episodes) and as rlgen evaluates it (100 greedy episodes), and the training
curve from TensorBoard. Writes a JSON of everything and a PNG of the curves against the paper's
values at 5M frames (envs/minatar.yml).

    python scripts/bench_pqn_minatar.py --seeds 0 1 --jobs 2
    # rlgen's DQN preset for about PQN's wall time (its epsilon schedule as in the 5M-frame preset):
    python scripts/bench_pqn_minatar.py --algo dqn --total-steps 200000 --set exploration_fraction=0.5 \
        --seeds 0 --jobs 2 --out dqn.json
    python scripts/bench_pqn_minatar.py --from-results docs/pqn_minatar_results.json   # table + PNG again
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

GAMES = ["Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"]
ROOT = Path(__file__).resolve().parent.parent


def episodes_of(run_dir: Path) -> tuple[list[int], list[float]]:
    """(steps, returns) of every training episode, from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("charts/episodic_return")
    return [e.step for e in events], [e.value for e in events]


def run_one(algo: str, game: str, seed: int, logdir: Path, extra: list[str]) -> dict:
    env_id = f"MinAtar/{game}-v1"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "rlgen.cli.main", f"train-{algo}", env_id, "--seed", str(seed),
                          "--logdir", str(logdir), "--quiet", "--device", "cpu", *extra],
                         capture_output=True, text=True, env=env, check=True).stdout
    wall = time.perf_counter() - start
    run_dir = Path(re.search(r"^run: (.+)$", out, re.M).group(1))
    trained = float(re.search(r"trained [\d,]+ steps in ([\d.]+) s", out).group(1))
    evaluation = re.search(r"eval over (\d+) episodes: ([-\d.]+) \+/- ([\d.]+)", out)
    steps, returns = episodes_of(run_dir)
    return {"algo": algo, "game": game, "seed": seed, "wall_seconds": wall, "train_seconds": trained,
            "final_last100": float(np.mean(returns[-100:])), "eval_mean": float(evaluation.group(2)),
            "eval_std": float(evaluation.group(3)), "episode_steps": steps, "episode_returns": returns}


def reference(game: str) -> dict:
    import yaml

    envs = yaml.safe_load((ROOT / "envs" / "minatar.yml").read_text())["envs"]
    return envs[f"MinAtar/{game}-v1"].get("reference", {})


def report(results: list[dict], png: Path) -> None:
    for r in results:
        r.setdefault("algo", "pqn")  # results written before DQN runs were added
    print(f"{'algo':<5} {'game':<14} {'seed':>4} {'frames':>9} {'wall min':>9} {'last-100 train':>15} {'eval':>14}")
    for r in sorted(results, key=lambda r: (r["algo"], r["game"], r["seed"])):
        frames = r["episode_steps"][-1] if r["episode_steps"] else 0
        print(f"{r['algo']:<5} {r['game']:<14} {r['seed']:>4} {frames:>9,} {r['wall_seconds'] / 60:>9.1f} "
              f"{r['final_last100']:>15.2f} {r['eval_mean']:>8.2f} +/- {r['eval_std']:.2f}")
    for algo in sorted({r["algo"] for r in results}):
        for game in GAMES:
            rows = [r for r in results if r["game"] == game and r["algo"] == algo]
            if rows:
                paper = {k: v["score"] for k, v in reference(game).items()}
                print(f"{algo:<5} {game:<14} mean last-100 {np.mean([r['final_last100'] for r in rows]):.2f}, eval "
                      f"{np.mean([r['eval_mean'] for r in rows]):.2f}, wall {np.mean([r['wall_seconds'] for r in rows]) / 60:.1f} "
                      f"min over {len(rows)} seeds; paper at 5M: {paper}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(GAMES), figsize=(4 * len(GAMES), 3.4))
    for ax, game in zip(axes, GAMES):
        for r in sorted((r for r in results if r["game"] == game), key=lambda r: (r["algo"], r["seed"])):
            steps, returns = np.asarray(r["episode_steps"]), np.asarray(r["episode_returns"])
            dqn = r["algo"] == "dqn"
            window = min(100, max(1, len(returns) // 4)) if dqn else 100  # short DQN runs: a shorter mean
            if len(returns) >= window:
                smooth = np.convolve(returns, np.ones(window) / window, mode="valid")
                ax.plot(steps[window - 1:] / 1e6, smooth, lw=2.2 if dqn else 1,
                        color="tab:purple" if dqn else f"C{r['seed']}",
                        label=f"rlgen DQN preset, same wall ({r['wall_seconds'] / 60:.0f} min)" if dqn
                        else f"PQN seed {r['seed']}, {r['wall_seconds'] / 60:.0f} min")
                if dqn:
                    ax.plot(steps[-1] / 1e6, smooth[-1], "o", color="tab:purple", ms=5)
        for name, value in reference(game).items():
            ax.axhline(value["score"], ls="--", lw=1, color="k" if "dqn" in name else "tab:red",
                       label=name.replace("minatar_paper_", "paper ").replace("_", " "))
        ax.set_title(f"MinAtar {game}")
        ax.set_xlabel("frames (M)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("return (mean of 100 training episodes)")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["pqn", "dqn"], default="pqn")
    parser.add_argument("--games", nargs="+", default=GAMES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--total-steps", type=int, default=None, help="passed to --total-steps (default: the preset's)")
    parser.add_argument("--merge", nargs="+", default=[], help="with --from-results: more result JSONs to draw with it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="passed to train-pqn --set")
    parser.add_argument("--out", default=str(ROOT / "docs" / "pqn_minatar_results.json"))
    parser.add_argument("--png", default=str(ROOT / "docs" / "pqn_minatar_curves.png"))
    parser.add_argument("--from-results", default=None, help="re-print the table and redraw the PNG from a JSON")
    args = parser.parse_args()
    if args.from_results:
        runs = [r for f in [args.from_results, *args.merge] for r in json.loads(Path(f).read_text())["runs"]]
        report(runs, Path(args.png))
        return
    extra = [x for o in args.overrides for x in ("--set", o)]
    if args.total_steps:
        extra += ["--total-steps", str(args.total_steps)]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(run_one, args.algo, g, s, Path(tmp) / f"{g}-{s}", extra) for s in args.seeds for g in args.games]
        results = []
        for job in jobs:
            results.append(job.result())
            r = results[-1]
            print(f"done {r['game']} seed {r['seed']}: {r['wall_seconds'] / 60:.1f} min, last-100 {r['final_last100']:.2f}, "
                  f"eval {r['eval_mean']:.2f}", flush=True)
            Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "runs": results}) + "\n")
    report(results, Path(args.png))


if __name__ == "__main__":
    main()
