"""Search spaces for ``rlgen tune``, declared in YAML beside the presets (``agents/tune.yml``).

A space maps config fields (dotted for nested ones, as ``--set`` takes them) to what a trial
may pick, RL Zoo's ``hyperparams_opt.py`` samplers written as data:

    learning_rate: {float: [1.0e-5, 1.0e-2], log: true}
    gradient_steps: {int: [1, 4]}
    batch_size: {choice: [32, 64, 128]}
    backbone.hidden_sizes: {choice: [[64, 64], [256, 256]]}

Every field name, range and choice is checked against the algorithm's config before the
first trial: a name the config does not have, an empty range or a value the field rejects
is one clear line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlgen.config import load_yaml
from rlgen.errors import InputError

KINDS = ("float", "int", "choice")


@dataclass(frozen=True)
class Param:
    name: str  # the config field, dotted for nested ones
    kind: str  # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        """This parameter's value for an Optuna trial (choices are suggested by index, so lists work)."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        if all(isinstance(c, (int, float, str, bool)) or c is None for c in self.choices):
            return trial.suggest_categorical(self.name, list(self.choices))
        return self.choices[trial.suggest_categorical(self.name, list(range(len(self.choices))))]

    def value_of(self, params: dict[str, Any]) -> Any:
        """The config value of a finished trial's ``params`` (choices of lists were stored as indices)."""
        value = params[self.name]
        if self.kind == "choice" and not all(isinstance(c, (int, float, str, bool)) or c is None for c in self.choices):
            return self.choices[value]
        return value

    def corners(self) -> list[Any]:
        """The values that bound this parameter (checked against the config before any trial)."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


def parse_space(raw: Any, where: str) -> list[Param]:
    """Read a space mapping (``where`` names it in errors)."""
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{where}: a search space is a mapping of config fields to ranges, e.g. "
                         "learning_rate: {float: [1.0e-5, 1.0e-2], log: true}")
    params = []
    for name, spec in raw.items():
        if not isinstance(spec, dict) or len(set(spec) & set(KINDS)) != 1 or set(spec) - {*KINDS, "log"}:
            raise InputError(f"{where}: {name}: give exactly one of {', '.join(KINDS)} (and log: true for a "
                             f"log scale), e.g. {name}: {{float: [0.001, 0.1]}}; got {spec!r}")
        kind = next(k for k in KINDS if k in spec)
        value, log = spec[kind], spec.get("log", False)
        if not isinstance(log, bool):
            raise InputError(f"{where}: {name}: log must be true or false, got {log!r}")
        if kind == "choice":
            if not isinstance(value, list) or not value:
                raise InputError(f"{where}: {name}: choice needs a non-empty list of values, got {value!r}")
            params.append(Param(str(name), kind, choices=tuple(_freeze(v) for v in value)))
            continue
        if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
            raise InputError(f"{where}: {name}: {kind} needs [low, high], got {value!r}")
        low, high = value
        if kind == "int" and not all(isinstance(v, int) for v in value):
            raise InputError(f"{where}: {name}: int bounds must be integers, got {value!r}")
        if not low < high:
            raise InputError(f"{where}: {name}: the range [{low}, {high}] is empty; give low < high")
        if log and low <= 0:
            raise InputError(f"{where}: {name}: a log scale needs low > 0, got {low}")
        params.append(Param(str(name), kind, float(low) if kind == "float" else low,
                            float(high) if kind == "float" else high, log))
    return params


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _freeze(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def load_space(algo: str, env_or_data: str, file: str | Path | None = None) -> list[Param]:
    """The space for ``algo`` on this task: ``file`` if given (a mapping of fields), else
    ``agents/tune.yml``'s ``ALGO/TASK`` entry, else its ``ALGO`` entry."""
    if file is not None:
        return parse_space(load_yaml(file), str(file))
    from rlgen.envs.specs import data_dir
    from rlgen.presets import SEARCH_SPACES

    path = data_dir("agents") / f"{SEARCH_SPACES}.yml"
    spaces = load_yaml(path)
    for key in (f"{algo}/{env_or_data}", algo):
        if key in spaces:
            return parse_space(spaces[key], f"{path}: {key}")
    raise InputError(f"{path} has no search space for {algo}; give one with --space FILE")


def overrides_of(params: list[Param], values: dict[str, Any]) -> dict[str, Any]:
    """``--set``-style overrides (dotted names) from parameter values, lists as lists."""
    return {p.name: list(v) if isinstance(v := values[p.name], tuple) else v for p in params}


def check_space(params: list[Param], build) -> None:
    """Build a config at every corner of the space (``build(overrides)`` raises on a bad field or
    value), so a misspelt name or an out-of-range bound fails before the first trial."""
    def plain(value):
        return list(value) if isinstance(value, tuple) else value

    first = {p.name: plain(p.corners()[0]) for p in params}  # fields that depend on each other come together
    for p in params:
        for value in p.corners():
            try:
                build({**first, p.name: plain(value)})
            except InputError as exc:
                raise InputError(f"search space field {p.name} = {value!r}: {exc}") from None
