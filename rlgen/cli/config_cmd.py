"""``rlgen config ALGO``: every config field with its type, default and help (and a preset's values)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import click

from rlgen.cli.common import user_errors

ALGOS = ("dqn", "pqn", "vae", "gan", "diffusion")


def config_rows(cls: type, values: Any = None, prefix: str = "") -> list[tuple[str, str, Any, Any, str]]:
    """(name, type, default, value, help) for every field of dataclass ``cls``, nested ones dotted."""
    from rlgen.config import _type_name

    hints = typing.get_type_hints(cls)
    defaults = cls()
    rows = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        value = getattr(values, f.name) if values is not None else None
        if dataclasses.is_dataclass(tp):
            rows.extend(config_rows(tp, value, prefix=f"{prefix}{f.name}."))
            continue
        rows.append((f"{prefix}{f.name}", _type_name(tp), getattr(defaults, f.name), value, f.metadata.get("help", "")))
    return rows


@click.command("config")
@click.argument("algo", type=click.Choice(ALGOS))
@click.option("--preset", default=None, help="Also show this preset's values (agents/<algo>.yml).")
@user_errors
def config_cmd(algo: str, preset: str | None) -> None:
    """Every field of ALGO's config: type, default, help; with --preset, the preset's value beside it.

    \b
    Examples:
      rlgen config dqn
      rlgen config dqn --preset CartPole-v1
      rlgen config diffusion --preset fashion-mnist
    """
    if algo in ("dqn", "pqn"):
        from rlgen.dqn import make_config
        from rlgen.dqn.resume import config_classes
        from rlgen.presets import get_preset

        cls = config_classes()[algo]
        values = make_config(get_preset(algo, preset).get("env_id", preset), preset, algo=algo) if preset else None
    else:
        from rlgen.generative.configs import make_config, model_parts

        cls = model_parts(algo)[0]
        values = make_config(algo, preset=preset) if preset else None
    for name, type_name, default, value, help_text in config_rows(cls, values):
        shown = f"{default!r}" if values is None or value == default else f"{value!r} (default {default!r})"
        click.echo(f"{name} = {shown}  [{type_name}]")
        if help_text:
            click.echo(f"    {help_text}")
