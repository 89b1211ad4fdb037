"""``rlgen export``: a run's networks as ONNX files (see rlgen.export.onnx and docs/export.md)."""

from __future__ import annotations

import click

from rlgen.cli.common import user_errors
from rlgen.export.onnx import DEFAULT_OPSET, FORMATS


@click.command("export")
@click.argument("run", type=click.Path())
@click.option("--format", "fmt", default="onnx", show_default=True, help=f"One of: {', '.join(FORMATS)}.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file (a VAE writes OUT_encoder.onnx and OUT_decoder.onnx) [default: beside the checkpoint].")
@click.option("--opset", type=int, default=DEFAULT_OPSET, show_default=True, help="ONNX opset to write.")
@user_errors
def export(run, fmt, out, opset):
    """Export RUN's networks (a run directory or checkpoint) for onnxruntime and other runtimes.

    \\b
    DQN: the Q-policy (obs -> q, action; recurrent ones take and return their state).
    gan: the generator (z -> images in [0, 1]).   vae: encoder and decoder.
    diffusion: the denoiser (sample, timestep[, class_labels] -> model output);
    the scheduler loop stays in Python (docs/export.md).

    \\b
    Examples:
      rlgen export runs/CartPole-v1__dqn__0__1700000000
      rlgen eval --onnx runs/CartPole-v1__dqn__0__1700000000/q_policy.onnx
    """
    from rlgen.export.onnx import export_run
    from rlgen.export.runtime import onnx_metadata

    for path in export_run(run, out, fmt=fmt, opset=opset):
        meta = onnx_metadata(path)
        click.echo(f"wrote {path} ({meta['rlgen_graph']}: {', '.join(meta['inputs'])} -> "
                   f"{', '.join(meta['outputs'])}; opset {meta['opset']})")


COMMANDS = [export]
