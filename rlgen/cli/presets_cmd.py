"""``rlgen presets``: what is tuned, by algorithm and task."""

from __future__ import annotations

import click

from rlgen.presets import list_presets, load_presets


@click.command()
@click.argument("algo", required=False)
def presets(algo: str | None) -> None:
    """List presets by algorithm and task (from agents/*.yml)."""
    table = list_presets()
    if algo is not None and algo not in table:
        raise click.BadParameter(f"{algo!r}; choose one of: {', '.join(table)}", param_hint="ALGO")
    for name in [algo] if algo else table:
        click.echo(f"{name}:")
        for preset, fields in load_presets(name).items():
            task = fields.get("env_id") or fields.get("data") or preset
            budget = fields.get("total_timesteps") or fields.get("steps")
            extra = f"  ({budget:,} steps)" if isinstance(budget, int) else ""
            click.echo(f"  {preset:<28} {task}{extra}" if task != preset else f"  {preset}{extra}")
