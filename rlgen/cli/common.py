"""Options every training command shares, and the one-line error handling."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from rlgen.errors import RlgenError


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


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (RlgenError, ValueError, FileNotFoundError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"Error: {message}", err=True)
            sys.exit(2)

    return wrapper
