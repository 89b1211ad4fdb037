"""``rlgen explain``: saliency / Grad-CAM, transformer attention, VAE latent traversals."""

from __future__ import annotations

import click

from rlgen.cli.common import user_errors


@click.command("explain")
@click.argument("run", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Directory for the pictures [default: RUN/explain].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the recorded episode.")
@click.option("--max-steps", type=int, default=1000, show_default=True, help="Longest episode to record.")
@click.option("--video", default="gif", show_default=True, help="gif or mp4, for the saliency and Grad-CAM clips.")
@click.option("--frames", type=int, default=6, show_default=True, help="Frames shown in the PNG strip.")
@click.option("--steps", type=int, default=9, show_default=True, help="VAE: values per latent dimension.")
@user_errors
def explain(run, out, seed, max_steps, video, frames, steps):
    """A look inside RUN's network, as pictures (also in TensorBoard, under RUN/explain).

    \\b
    Image Q-networks (MinAtar, Atari): gradient saliency and Grad-CAM for the chosen
      action over a recorded episode: saliency.gif, gradcam.gif, saliency.png.
    Transformer Q-networks: each step's attention over its context window,
      heads averaged and per head: attention.png.
    VAEs: latent traversals, one latent dimension per row: traversal.png.
    """
    from rlgen.explain.report import explain_run

    for path in explain_run(run, out, seed=seed, max_steps=max_steps, video=video, frames=frames, steps=steps):
        click.echo(f"wrote {path}")


COMMANDS = [explain]
