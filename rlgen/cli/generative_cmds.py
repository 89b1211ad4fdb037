"""``rlgen train vae|gan|diffusion`` and ``rlgen sample vae|gan|diffusion``."""

from __future__ import annotations

import dataclasses

import click

from rlgen.cli.common import (
    INTERRUPTED_EXIT,
    refuse_on_resume,
    training_options,
    user_errors,
)
from rlgen.generative.configs import make_config, model_parts


@click.command("train")
@click.argument("model")
@click.option(
    "--data", default=None, help="fashion-mnist | mnist | digits | cifar10 | an image folder [default: digits]."
)
@click.option(
    "--preset", default=None, help="Preset name from agents/<model>.yml (default: the one named after --data)."
)
@click.option("--steps", type=int, default=None, help="Training steps (generator steps for gan).")
@click.option("--batch-size", type=int, default=None, help="Images per step.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Look for the dataset here first.")
@click.option("--download", is_flag=True, help="Download the dataset if it is not found (needs internet).")
@click.option("--resume", type=click.Path(), default=None, help="Continue the run in this directory.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@training_options
@user_errors
def train(
    model,
    data,
    preset,
    steps,
    batch_size,
    data_dir,
    download,
    resume,
    quiet,
    seed,
    device,
    logdir,
    overrides,
    config_file,
):
    """Train a generative MODEL: vae, gan (WGAN-GP) or diffusion.

    Under torchrun the run is data-parallel over the ranks (--batch-size is the global batch):

    \b
    Examples:
      rlgen train diffusion --data fashion-mnist --steps 20000
      torchrun --nproc-per-node 4 -m rlgen train diffusion --data fashion-mnist
      rlgen train gan --set n_critic=5 --set gp_lambda=10
      rlgen train vae --resume runs/digits__vae__0__1712345678 --steps 10000
    """
    from rlgen.generative.runs import config_from_run, open_run
    from rlgen.training import ranks_from_env

    config_cls, train_fn = model_parts(model)
    if resume is not None:
        refuse_on_resume({"--data": data, "--preset": preset, "--batch-size": batch_size, "--seed": seed,
                          "--set": overrides, "--config": config_file}, allowed="--steps, --device, --quiet")
        config = config_from_run(open_run(resume, model), config_cls)
        if steps is not None:
            config = dataclasses.replace(config, steps=steps)
    else:
        config = make_config(model, data, preset, config_file, list(overrides), seed=seed, steps=steps,
                             batch_size=batch_size)  # fmt: skip
    result = train_fn(
        config,
        logdir=logdir,
        device=device,
        data_dir=data_dir,
        download=download,
        resume=resume,
        progress=False if quiet else None,
    )
    ranks = ranks_from_env()
    if not ranks.is_main:  # a data-parallel job reports once, from rank 0
        if result.interrupted:
            click.echo(f"rank {ranks.rank} of {ranks.world_size} stopped at step {result.step:,} "
                       "(rank 0 saved the checkpoint)", err=True)
            raise SystemExit(INTERRUPTED_EXIT)
        return
    click.echo(f"run: {result.run_dir}")
    for tag, value in result.metrics.items():
        click.echo(f"{tag}: {value:.4g}")
    if result.interrupted:
        click.echo(f"interrupted at step {result.step:,}; resume with: rlgen train {model} --resume {result.run_dir}")
        raise SystemExit(INTERRUPTED_EXIT)
    click.echo(f"sample with: rlgen sample {model} --run {result.run_dir}")


@click.command("sample")
@click.argument("model")
@click.option(
    "--run", "run_dir", type=click.Path(), default=None, help="Run directory [default: the latest run of MODEL]."
)
@click.option("--logdir", default="runs", show_default=True, help="Where to look for the latest run.")
@click.option("-n", "num_images", type=int, default=64, show_default=True, help="Number of images.")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True, help="PNG to write.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--scheduler", default=None, help="diffusion: ddpm | ddim | dpm-solver++ [default: the run's].")
@click.option("--steps", type=int, default=None, help="diffusion: inference steps [default: the run's].")
@click.option(
    "--class", "class_label", type=int, default=None, help="diffusion: class index to draw (conditional runs)."
)
@click.option("--guidance", type=float, default=None, help="diffusion: classifier-free guidance weight w.")
@click.option("--interpolate", is_flag=True, help="vae, gan: rows of latent interpolations.")
@click.option("--evaluate", is_flag=True, help="Also print the domain FID / KID of the samples vs the test split.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where the dataset is (--evaluate).")
@click.option(
    "--inception-weights", type=click.Path(dir_okay=False), default=None,
    help="FID Inception-v3 weights (torch-fidelity's pt_inception-2015-12-05 file): adds torchmetrics' "
    "Inception FID to --evaluate (needs torchmetrics and torch-fidelity).",
)  # fmt: skip
@user_errors
def sample(
    model, run_dir, logdir, num_images, out, seed, device, scheduler, steps, class_label, guidance, interpolate,
    evaluate, data_dir, inception_weights,
):  # fmt: skip
    """Write a grid of samples from a trained MODEL (vae, gan or diffusion) to a PNG.

    \b
    Examples:
      rlgen sample gan -n 64 --out gan.png          # the latest gan run under runs/
      rlgen sample vae --interpolate --out walk.png
      rlgen sample diffusion --scheduler ddim --steps 50 --class 7 --guidance 3
      rlgen sample diffusion -n 1000 --scheduler ddpm --steps 50 --evaluate
      rlgen sample gan -n 1000 --evaluate --inception-weights pt_inception-2015-12-05-6726825d.pth
    """
    from rlgen.generative.runs import find_latest_run, run_directory, sample_metrics
    from rlgen.generative.sampling import generate
    from rlgen.training import resolve_device, save_image_grid

    model_parts(model)  # unknown names fail here, before any search
    run = run_directory(run_dir) if run_dir is not None else find_latest_run(logdir, model)
    samples = generate(
        model, run, num_images=num_images, seed=seed, device=resolve_device(device), scheduler=scheduler,
        steps=steps, class_label=class_label, guidance=guidance, interpolate=interpolate,
    )  # fmt: skip
    path = save_image_grid(samples.images, out, nrow=samples.nrow)
    click.echo(f"wrote {path} ({num_images} {'interpolated ' if interpolate else ''}samples from {run})")
    if evaluate or inception_weights is not None:
        metrics = sample_metrics(
            samples.images, samples.dataset, data_dir, resolve_device(device), samples.labels, inception_weights
        )
        click.echo("  ".join(f"{tag.removeprefix('eval/')} {value:.4g}" for tag, value in metrics.items()))


COMMANDS = [train, sample]
