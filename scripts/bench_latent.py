"""Latent diffusion against its VAE and against pixel diffusion at the same wall time, side by side.

On one core: the VAE preset (``agents/vae.yml`` ``fashion-mnist-latent``), then latent diffusion
on it (``agents/diffusion.yml`` ``fashion-mnist-latent``), each timed as a whole process with its
final evaluation. On the other core, at the same time: the pixel-space diffusion preset
(``fashion-mnist``), stopped with Ctrl-C (SIGINT: it saves) when the latent pipeline is done, so
it had the same wall time, then scored the same way (``rlgen sample diffusion -n 1000 --evaluate``,
the run's default sampler). Every score is the domain FID / KID of 1,000 samples against the
test split, beside the real-data floor. Writes the latent run's sample grid.

    python scripts/bench_latent.py --out docs/latent_bench_results.json --grid docs/latent_fashion_mnist.png
    python scripts/bench_latent.py --reconstructions RUN_DIR     # the ceiling: the VAE's reconstructions
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RLGEN = [sys.executable, "-m", "rlgen"]


def metrics(text: str) -> dict[str, float]:
    """``eval/fid: 12.3`` lines (rlgen train) or ``fid 12.3  fid_floor ...`` (rlgen sample --evaluate)."""
    found = {k: float(v) for k, v in re.findall(r"eval/(\w+): ([-\d.e+]+)", text)}
    found.update({k: float(v) for k, v in re.findall(r"\b(fid|fid_floor|kid|kid_floor)\s+([-\d.e+]+)", text)})
    return found


def run_dir(text: str) -> Path:
    return Path(re.search(r"^run: (.+)$", text, re.M).group(1))


def timed(command: list[str], env: dict[str, str]) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return done.stdout, time.perf_counter() - start


def reconstructions(run: Path, data: str, count: int = 1000) -> dict[str, float]:
    """Domain FID / KID of a latent run's VAE reconstructions of training images: its samples' ceiling."""
    import torch

    from rlgen.data import load_dataset, to_model_range
    from rlgen.generative.diffusion.sample import load
    from rlgen.generative.runs import sample_metrics

    torch.set_num_threads(1)
    codec = load(run, torch.device("cpu")).codec
    images = to_model_range(load_dataset(data, "train").images[:count], "unit")
    decoded = (codec.decode(codec.encode(images)) + 1.0) / 2.0
    return sample_metrics(decoded, data, None, torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reconstructions", default=None, metavar="RUN_DIR",
                        help="train nothing: score the VAE reconstructions of this latent diffusion run")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--preset", default="fashion-mnist-latent")
    parser.add_argument("--pixel-preset", default="fashion-mnist")
    parser.add_argument("--logdir", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    parser.add_argument("--grid", default=None, help="write 64 latent-diffusion samples here (PNG)")
    args = parser.parse_args()
    if args.reconstructions:
        print(f"reconstructions of 1,000 training images: {reconstructions(Path(args.reconstructions), args.data)}")
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(args.logdir or tmp)
        pixel = subprocess.Popen([*RLGEN, "train", "diffusion", "--data", args.data, "--preset", args.pixel_preset,
                                  "--steps", "10000000", "--logdir", str(logdir / "pixel"), "--quiet"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        start = time.perf_counter()
        vae_out, vae_wall = timed([*RLGEN, "train", "vae", "--data", args.data, "--preset", args.preset,
                                   "--logdir", str(logdir / "latent"), "--quiet"], env)
        vae_run = run_dir(vae_out)
        print(f"VAE: {vae_wall:.0f} s, prior samples {metrics(vae_out)}", flush=True)
        ldm_out, ldm_wall = timed([*RLGEN, "train", "diffusion", "--data", args.data, "--preset", args.preset,
                                   "--set", f"vae_run={vae_run}", "--logdir", str(logdir / "latent"), "--quiet"], env)
        ldm_run = run_dir(ldm_out)
        wall = time.perf_counter() - start
        print(f"latent diffusion: {ldm_wall:.0f} s, {metrics(ldm_out)}; VAE + latent diffusion {wall:.0f} s",
              flush=True)
        pixel.send_signal(signal.SIGINT)  # Ctrl-C: the pixel run saves at the step it is in
        pixel_out, _ = pixel.communicate(timeout=600)
        pixel_run = run_dir(pixel_out)
        step = re.search(r"interrupted at step ([\d,]+)", pixel_out)
        scored, _ = timed([*RLGEN, "sample", "diffusion", "--run", str(pixel_run), "-n", "1000", "--evaluate",
                           "--out", str(logdir / "pixel.png")], env)
        pixel_metrics = metrics(scored)
        print(f"pixel diffusion stopped at step {step.group(1) if step else '?'} after {wall:.0f} s: {pixel_metrics}",
              flush=True)
        if args.grid:
            subprocess.run([*RLGEN, "sample", "diffusion", "--run", str(ldm_run), "-n", "64", "--out", args.grid],
                           env=env, check=True, stdout=subprocess.DEVNULL)
        results = {
            "command": " ".join(sys.argv), "wall_seconds": {"vae": vae_wall, "latent_diffusion": ldm_wall,
                                                            "both": wall},
            "vae_prior": metrics(vae_out), "latent_diffusion": metrics(ldm_out),
            "pixel_diffusion_same_wall": {**pixel_metrics, "steps": step.group(1) if step else None},
        }
        floor = results["latent_diffusion"].get("fid_floor", float("nan"))
        print(f"\n| samples (1,000, {args.data}) | domain FID | x floor ({floor:.2f}) |\n|---|---:|---:|")
        for name, values in (("VAE prior", results["vae_prior"]), ("latent diffusion", results["latent_diffusion"]),
                             ("pixel diffusion, same wall time", pixel_metrics)):
            print(f"| {name} | {values.get('fid', float('nan')):.2f} | {values.get('fid', float('nan')) / floor:.1f} |")
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
