"""Environment specs: the YAML files in the top-level ``envs/`` folder.

Each file describes one family (how it is made and wrapped, its solved
threshold and published reference scores). They are read from the source
checkout when present and from the copy inside the wheel otherwise.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rlgen.errors import UnknownNameError


def data_dir(name: str) -> Path:
    """The folder of ``agents/`` or ``envs/``: source checkout first, then the installed wheel."""
    checkout = Path(__file__).resolve().parents[2] / name
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files(f"rlgen._{name}")))


@dataclass(frozen=True)
class EnvSpec:
    """What rlgen knows about one environment id."""

    env_id: str
    family: str
    backbone: str
    frame_stack: int
    solved_threshold: float | None
    random_score: float | None
    reference: dict[str, Any] = field(default_factory=dict)
    requires: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@functools.cache
def load_families() -> dict[str, dict[str, Any]]:
    """All family files, keyed by family name."""
    families = {}
    for path in sorted(data_dir("envs").glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        families[data["family"]] = data
    return families


def known_env_ids() -> list[str]:
    return [env_id for fam in load_families().values() for env_id in fam.get("envs", {})]


def family_of(env_id: str) -> dict[str, Any] | None:
    for fam in load_families().values():
        if env_id in fam.get("envs", {}):
            return fam
    for fam in load_families().values():
        prefix = fam.get("id_prefix")
        if prefix and env_id.startswith(prefix):
            return fam
    return None


def get_spec(env_id: str) -> EnvSpec:
    """The spec of ``env_id``; ids outside the spec files fall back to gymnasium's registry."""
    fam = family_of(env_id)
    if fam is None:
        fam = _generic_family(env_id)
    entry = fam.get("envs", {}).get(env_id, {}) or {}
    return EnvSpec(
        env_id=env_id,
        family=fam["family"],
        backbone=entry.get("backbone", fam.get("backbone", "mlp")),
        frame_stack=int(entry.get("frame_stack", fam.get("frame_stack", 1))),
        solved_threshold=entry.get("solved_threshold"),
        random_score=entry.get("random_score"),
        reference=entry.get("reference", {}) or {},
        requires=entry.get("requires", fam.get("requires")),
        options=entry.get("options", {}) or {},
    )


def _generic_family(env_id: str) -> dict[str, Any]:
    """Any other registered gymnasium id is made plainly (vector observations assumed)."""
    import gymnasium as gym

    if env_id not in gym.registry:
        _raise_unknown(env_id)
    return {"family": "gymnasium", "backbone": "mlp", "frame_stack": 1, "envs": {}}


def _raise_unknown(env_id: str) -> None:
    import gymnasium as gym

    candidates = sorted(set(known_env_ids()) | set(gym.registry))
    close = difflib.get_close_matches(env_id, candidates, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"unknown environment id {env_id!r}.{hint} See `rlgen presets` for the tuned tasks."
    )
