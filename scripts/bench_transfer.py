"""Transfer benchmark: a MinAtar Q-network whose CNN starts from a VAE trained on random-play frames.

1. ``rlgen collect-frames`` of the game (uniformly random play);
2. a VAE on those frames (``agents/vae.yml`` preset ``minatar``: its encoder is the MinAtar DQN
   preset's CNN, small_cnn [16] -> 128);
3. DQN (the game's preset, ``--total-steps`` env steps) three ways on the same seeds:
   from scratch, the CNN loaded from the VAE encoder and frozen (feature extraction), and
   loaded then fine-tuned (``--lr-factor`` x the learning rate); a deterministic evaluation
   every ``--eval-every`` steps draws the curves (mean over seeds, min..max shaded) into a PNG;
   the final 100-episode evaluations are printed as a markdown table.

    python scripts/bench_transfer.py --game Breakout --total-steps 100000 --seeds 3 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench_memory import label_axis, plot_curves, read_curve, save_figure

VARIANTS = ("scratch", "frozen", "fine-tuned")


def pretrain(game: str, frames: int, workdir: Path) -> Path:
    """Frames of random play, then the VAE; returns the VAE run directory."""
    import torch

    from rlgen.data.frames import collect_frames, save_frames
    from rlgen.generative.configs import make_config
    from rlgen.generative.vae.train import train

    torch.set_num_threads(1)
    env_id = f"MinAtar/{game}-v1"
    path = save_frames(collect_frames(env_id, frames, seed=12345), workdir / f"{game}-frames.safetensors", env_id,
                       12345)
    config = make_config("vae", str(path), "minatar", None, [])
    start = time.perf_counter()
    result = train(config, logdir=workdir / "vae", device="cpu", progress=False)
    print(f"VAE on {frames:,} frames: test ELBO {result.metrics.get('eval/elbo', float('nan')):.2f} nats in "
          f"{time.perf_counter() - start:.0f} s ({result.run_dir})", flush=True)
    return result.run_dir


def run_one(game: str, variant: str, seed: int, vae_run: str, total_steps: int, eval_every: int,
            lr_factor: float, logdir: str) -> dict:
    import torch

    from rlgen.dqn import make_config
    from rlgen.dqn.train import train

    torch.set_num_threads(1)
    overrides = [f"eval_freq={eval_every}", "eval_during_episodes=20", "eval_episodes=100"]
    if variant != "scratch":
        overrides += [f"transfer.init_from={vae_run}:vae.encoder", "transfer.init_into=q_net.backbone"]
        overrides += ["transfer.freeze=true"] if variant == "frozen" else [f"transfer.lr_factor={lr_factor}"]
    env_id = f"MinAtar/{game}-v1"
    config = make_config(env_id, seed=seed, total_timesteps=total_steps, overrides=overrides)
    start = time.perf_counter()
    result = train(config, device="cpu", logdir=Path(logdir) / variant, progress=False)
    return {"game": game, "variant": variant, "seed": seed, "eval": result.eval_mean, "eval_std": result.eval_std,
            "wall": time.perf_counter() - start, "curve": read_curve(result.run_dir), "run_dir": str(result.run_dir)}


def plot(results: list[dict], game: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"scratch": "tab:gray", "frozen": "tab:blue", "fine-tuned": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant and r["curve"]]
        if not runs:
            continue
        plot_curves(ax, runs, colours[variant], variant)
    ax.set_title(f"MinAtar/{game}-v1: Q-network CNN from a VAE on random-play frames")
    label_axis(ax)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr-factor", type=float, default=0.1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--logdir", default="runs/bench_transfer")
    parser.add_argument("--out", default="docs/transfer_minatar_curves.png")
    parser.add_argument("--results", default=None, help="also write the raw results as JSON here")
    args = parser.parse_args()

    logdir = Path(args.logdir)
    vae_run = pretrain(args.game, args.frames, logdir)
    jobs = [(args.game, v, s, str(vae_run), args.total_steps, args.eval_every, args.lr_factor, str(logdir))
            for s in range(args.seeds) for v in VARIANTS]
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for result in pool.map(run_one, *zip(*jobs)):
            results.append(result)
            print(f"{result['variant']:<10} seed {result['seed']}: eval {result['eval']:.2f} +/- "
                  f"{result['eval_std']:.2f} in {result['wall']:.0f} s", flush=True)
    if args.results:
        Path(args.results).write_text(json.dumps({"command": vars(args), "vae_run": str(vae_run),
                                                  "results": results}, indent=1) + "\n")
    plot(results, args.game, Path(args.out))
    print(f"\n| variant | final eval per seed (100 episodes) | mean | wall s / run |\n|---|---|---|---|")
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant]
        evals = [r["eval"] for r in runs]
        print(f"| {variant} | {', '.join(f'{e:.2f}' for e in evals)} | {statistics.mean(evals):.2f} "
              f"| {statistics.mean(r['wall'] for r in runs):.0f} |")
    print(f"\ncurves: {args.out}")


if __name__ == "__main__":
    main()
