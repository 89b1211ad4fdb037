"""N seeds three ways, side by side in one run: N sequential single runs, one ``--seeds N`` batch, one SB3 run.

The single runs and the batch train the same preset on the same seeds, each with its
100-episode evaluation (what ``rlgen train-dqn`` does); SB3 runs RL Zoo's CartPole-v1
preset once (learn + the same 100-episode evaluation). Everything runs in this process on
one torch thread. Prints the wall time per seed of each way and their ratios, and both
ways' final scores (a Mann-Whitney U test says whether the batch's scores differ from the
single runs').

    python scripts/bench_seeds.py --sizes 4 16 64
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import numpy as np
import scipy.stats
import torch
from bench_dqn import run_sb3

from rlgen.dqn import make_config
from rlgen.dqn.seeds import train_seeds
from rlgen.dqn.train import train
from rlgen.stats import GroupSummary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--sizes", nargs="+", type=int, default=[4, 16, 64])
    parser.add_argument("--first-seed", type=int, default=1000, help="seeds first-seed .. first-seed + N - 1")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides for rlgen")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())  # torch's lazy imports, before any clock starts
    rows = []
    with tempfile.TemporaryDirectory() as logdir:
        start = time.perf_counter()
        sb3 = run_sb3(args.first_seed, logdir)
        sb3_wall = time.perf_counter() - start  # learn + its 100-episode evaluation
        print(f"SB3 (RL Zoo preset), one run: {sb3_wall:.1f} s (learn {sb3['wall']:.1f} s), eval {sb3['eval']:.1f}",
              flush=True)
        for n in args.sizes:
            base = make_config(args.env, overrides=args.overrides)
            configs = [dataclasses.replace(base, seed=args.first_seed + i) for i in range(n)]
            start = time.perf_counter()
            singles = [train(c, device="cpu", logdir=f"{logdir}/single", progress=False).eval_mean for c in configs]
            single_wall = time.perf_counter() - start
            torch.set_num_threads(1)
            start = time.perf_counter()
            group = train_seeds(configs, device="cpu", logdir=f"{logdir}/group", progress=False)
            group_wall = time.perf_counter() - start
            batched = [r.eval_mean for r in group.runs]
            seeds = [c.seed for c in configs]
            threshold = group.summary.threshold
            p_value = scipy.stats.mannwhitneyu(singles, batched).pvalue if singles != batched else 1.0
            row = {"n": n, "single_wall": single_wall, "group_wall": group_wall, "sb3_wall": sb3_wall,
                   "single_returns": singles, "group_returns": batched, "mann_whitney_p": float(p_value),
                   "single_summary": dataclasses.asdict(GroupSummary.of(args.env, seeds, singles, threshold)),
                   "group_summary": dataclasses.asdict(group.summary)}
            rows.append(row)
            print(f"N={n}: {n} single runs {single_wall:.1f} s ({single_wall / n:.2f} s/seed); --seeds {n}: "
                  f"{group_wall:.1f} s ({group_wall / n:.2f} s/seed); batch/singles per seed "
                  f"{group_wall / single_wall:.2f}; batch of {n} / one SB3 run {group_wall / sb3_wall:.2f}", flush=True)
            for name, scores in (("singles", singles), ("batch", batched)):
                print(f"  {name:>7}: " + " | ".join(GroupSummary.of(args.env, seeds, scores, threshold).lines()[1:]))
            print(f"  Mann-Whitney U, batch vs singles: p = {p_value:.3f}; per seed |difference| "
                  f"max {np.max(np.abs(np.subtract(singles, batched))):.1f}", flush=True)
    print(f"\n{'N':>4} {'singles s/seed':>15} {'batch s/seed':>13} {'batch/singles':>14} {'batch / 1 SB3 run':>18}")
    for r in rows:
        print(f"{r['n']:>4} {r['single_wall'] / r['n']:>15.2f} {r['group_wall'] / r['n']:>13.2f} "
              f"{r['group_wall'] / r['single_wall']:>14.2f} {r['group_wall'] / r['sb3_wall']:>18.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"sb3": {**sb3, "whole_wall": sb3_wall}, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
