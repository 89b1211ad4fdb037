"""Entry point of the ``rlgen`` console script."""

from __future__ import annotations

import gc

# Importing torch and the commands makes over a million objects, and the cyclic garbage collector's
# full passes over them during the import cost ~0.4 s of every command (docs/benchmarks.md): no
# collections while importing, and what the imports made is frozen out of later ones (it lives
# as long as the process). The process is rlgen's own; a library import does not do this.
gc.disable()

import click  # noqa: E402

from rlgen import __version__  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rlgen")
@click.option("--debug", is_flag=True, help="Show full tracebacks, also for rlgen's one-line errors.")
def cli(debug: bool) -> None:
    """rlgen: DQN agents and generative models (VAE, WGAN-GP, diffusion) on PyTorch.

    Watch any run with: tensorboard --logdir runs
    """


def _register() -> None:
    # Commands live in one module per stack; importing them here keeps
    # `rlgen --help` complete.
    from rlgen.cli import config_cmd, presets_cmd

    cli.add_command(presets_cmd.presets)
    cli.add_command(config_cmd.config_cmd)
    for module_name in ("rlgen.cli.dqn_cmds", "rlgen.cli.generative_cmds", "rlgen.cli.export_cmd", "rlgen.cli.explain_cmd",
                        "rlgen.cli.tune_cmd", "rlgen.cli.frames_cmd"):
        try:
            module = __import__(module_name, fromlist=["COMMANDS"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
gc.freeze()
gc.enable()


def main() -> None:
    try:
        cli(prog_name="rlgen")
    finally:
        # The process ends here: its last garbage collections would walk every object torch
        # made (0.7 s with torch._dynamo imported, 0.14 s frozen; docs/benchmarks.md).
        gc.freeze()


if __name__ == "__main__":
    main()
