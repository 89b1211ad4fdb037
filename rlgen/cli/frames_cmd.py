"""``rlgen collect-frames``: observations of random play as an image dataset file."""

from __future__ import annotations

import click

from rlgen.cli.common import user_errors


@click.command("collect-frames")
@click.argument("env_id")
@click.option("--steps", type=int, default=20_000, show_default=True, help="Frames to collect.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The .safetensors file to write.")
@click.option("--seed", type=int, default=0, show_default=True)
@user_errors
def collect_frames_cmd(env_id, steps, out, seed):
    """Save the frames of uniformly random play in ENV_ID (image observations) as a dataset.

    Any `--data` takes the file, e.g. to pretrain an encoder for a Q-network:

    \b
      rlgen collect-frames MinAtar/Breakout-v1 --steps 20000 --out breakout.safetensors
      rlgen train vae --data breakout.safetensors --preset minatar
      rlgen train-dqn MinAtar/Breakout-v1 --set transfer.init_from=RUN:vae.encoder \\
          --set transfer.init_into=q_net.backbone --set transfer.freeze=true
    """
    from rlgen.data.frames import collect_frames, save_frames

    images = collect_frames(env_id, steps, seed)
    path = save_frames(images, out, env_id, seed)
    click.echo(f"wrote {path}: {len(images):,} frames {tuple(images.shape[1:])} of random play in {env_id}")


COMMANDS = [collect_frames_cmd]
