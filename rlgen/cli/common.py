"""Options every training command shares, and the one-line error handling."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from rlgen.errors import InputError, RlgenError


def training_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--seed --device --logdir --set --config``, shared by every ``train*`` command."""
    options = [
        click.option("--seed", type=int, default=None, help="Random seed (default: the preset's, else 0)."),
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto | cpu | cuda | cuda:N | mps (auto picks cuda > mps > cpu).",
        ),
        click.option("--logdir", default="runs", show_default=True, help="Parent directory of run directories."),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override any config field, typed and checked (repeatable), e.g. --set learning_rate=1e-3.",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            default=None,
            help="A YAML file of config fields of your own, applied over the preset.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# Exit code of a run stopped by Ctrl-C / SIGTERM after saving (the shell's 128 + SIGINT).
INTERRUPTED_EXIT = 130


def refuse_on_resume(options: dict[str, Any], allowed: str) -> None:
    """A resumed run keeps its own config: refuse, all at once, the options that would change it."""
    given = [flag for flag, value in options.items() if value]
    if given:
        raise InputError(
            f"--resume continues a run with its own config, so {', '.join(given)} cannot be given with it "
            f"(on resume only {allowed} may be); start a new run to change them"
        )


def debug_enabled() -> bool:
    """``rlgen --debug ...``: show tracebacks, even of rlgen's own errors."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def refuse_torchrun(command: str, instead: str) -> None:
    """Commands that do not train data-parallel say so under torchrun, instead of N copies each training alone."""
    from rlgen.training import ranks_from_env

    world = ranks_from_env().world_size
    if world > 1:
        raise InputError(f"`rlgen {command}` does not run data-parallel (started by torchrun with WORLD_SIZE={world}); "
                         f"only `rlgen train vae|gan|diffusion` do; {instead}")


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn rlgen's own errors (what a user caused and can fix) into one line on stderr and exit code 2.

    Any other exception is a bug and keeps its traceback; ``rlgen --debug`` shows
    the traceback of rlgen's errors too.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RlgenError as exc:
            if debug_enabled():
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"Error: {message}", err=True)
            sys.exit(2)

    return wrapper
