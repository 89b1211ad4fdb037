"""Presets: tuned hyperparameters per algorithm and task, read from the top-level ``agents/`` folder.

``agents/<algo>.yml`` maps preset names to config fields (RL Zoo's
``hyperparams/<algo>.yml`` layout). A preset named like an environment id or a
dataset is that task's default.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import yaml

from rlgen.envs.specs import data_dir
from rlgen.errors import UnknownNameError


SEARCH_SPACES = "tune"  # agents/tune.yml holds `rlgen tune`'s search spaces, not presets


@functools.cache
def load_presets(algo: str) -> dict[str, dict[str, Any]]:
    """All presets of ``algo`` (empty when it has no file)."""
    path = data_dir("agents") / f"{algo}.yml"
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def list_presets() -> dict[str, list[str]]:
    """Preset names by algorithm."""
    algos = sorted(p.stem for p in data_dir("agents").glob("*.yml") if p.stem != SEARCH_SPACES)
    return {algo: sorted(load_presets(algo)) for algo in algos}


def get_preset(algo: str, name: str) -> dict[str, Any]:
    """A copy of preset ``name`` of ``algo``; unknown names get close-match suggestions."""
    presets = load_presets(algo)
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"unknown {algo} preset {name!r}.{hint} `rlgen presets` lists them all."
        )
    return dict(presets[name])


def has_preset(algo: str, name: str) -> bool:
    return name in load_presets(algo)
