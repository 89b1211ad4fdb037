"""Save where a vector env's copies are, as JSON, and put fresh copies back there (no pickle).

A run that resumes must continue the episodes it was in, not start new ones,
or its replay, its exploration and its final weights all drift from the
uninterrupted run. Environments have no common ``get_state``, so rlgen keeps
what it takes to *replay* each copy's current episode instead:

- for every copy, how its episode began: the seed of a seeded reset, or, just
  before its autoreset, the states of every numpy generator inside the copy
  (gymnasium's ``np_random``, MinAtar's ``RandomState``) and its plain
  attributes (some outlive a reset, like MinAtar's sticky ``last_action``);
- the actions the copy took since.

Restoring builds fresh copies, puts their generators in those states, resets
and replays the actions: deterministic environments end exactly where they
were, wrappers (time limits, episode statistics) included. At most one
episode per copy is replayed.

``CartPoleVectorEnv`` (one NumPy array for all copies, one shared generator)
is saved directly instead: its arrays and its generator state.

Families whose randomness lives outside numpy (the ALE's sticky-action RNG,
Atari's life-loss wrappers) are not exact; ``exact`` says so and resume says
so to the user.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector.utils import concatenate

from rlgen.envs.specs import get_spec
from rlgen.errors import RlgenError

# Families whose copies hold all their randomness in numpy generators.
EXACT_FAMILIES = ("classic_control", "memory", "minatar")
_MAX_DEPTH = 6
# Packages whose objects are walked to find generators and carried-over attributes.
_PACKAGES = ("gymnasium", "minatar", "rlgen")


def _objects(env: Any) -> list[tuple[str, Any]]:
    """The objects one environment copy is made of (wrappers, the env, a game inside it), by path."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def walk(obj: Any, path: str, depth: int) -> None:
        if depth > _MAX_DEPTH or id(obj) in seen:
            return
        seen.add(id(obj))
        found.append((path, obj))
        for name, value in sorted(vars(obj).items()):
            if hasattr(value, "__dict__") and type(value).__module__.split(".")[0] in _PACKAGES:
                walk(value, f"{path}.{name}", depth + 1)

    walk(env, "env", 0)
    return found


def _rng_objects(env: Any) -> list[tuple[str, Any]]:
    """Every numpy generator inside one environment copy, by attribute path, each once."""
    found, seen = [], set()
    for path, obj in _objects(env):
        for name, value in sorted(vars(obj).items()):
            if isinstance(value, (np.random.Generator, np.random.RandomState)) and id(value) not in seen:
                seen.add(id(value))
                found.append((f"{path}.{name}", value))
    return found


def _scalars(env: Any) -> dict[str, Any]:
    """Plain attributes (numbers, flags) of every object: some outlive a reset (MinAtar's last_action)."""
    return {f"{path}.{name}": value for path, obj in _objects(env) for name, value in sorted(vars(obj).items())
            if value is None or type(value) in (bool, int, float, str)}


def _set_scalars(env: Any, scalars: dict[str, Any]) -> None:
    objects = dict(_objects(env))
    for key, value in scalars.items():
        path, name = key.rsplit(".", 1)
        if path in objects and hasattr(objects[path], name):
            setattr(objects[path], name, value)


def _rng_snapshot(env: Any) -> dict[str, Any]:
    snapshot = {}
    for path, rng in _rng_objects(env):
        if isinstance(rng, np.random.Generator):
            snapshot[path] = {"generator": rng.bit_generator.state}
        else:
            state = rng.get_state(legacy=False)
            snapshot[path] = {"random_state": {**state, "state": {"key": state["state"]["key"].tolist(),
                                                                    "pos": int(state["state"]["pos"])}}}
    return snapshot


def _set_rngs(env: Any, snapshot: dict[str, Any]) -> None:
    objects = dict(_rng_objects(env))
    if set(objects) != set(snapshot):
        raise RlgenError(
            f"the saved environment state does not fit this environment (generators {sorted(snapshot)} "
            f"saved, {sorted(objects)} found); resume with the same rlgen and gymnasium versions"
        )
    for path, saved in snapshot.items():
        rng = objects[path]
        if "generator" in saved:
            rng.bit_generator.state = saved["generator"]
        else:
            state = saved["random_state"]
            rng.set_state({**state, "state": {"key": np.asarray(state["state"]["key"], dtype=np.uint32),
                                              "pos": state["state"]["pos"]}})


class ResumableVectorEnv(gym.vector.VectorWrapper):
    """A vector env from ``make_vector_env`` that can save and restore where its copies are.

    Args:
        envs: the vector env.
        env_id: its id (decides whether a restore is exact).
    """

    def __init__(self, envs: gym.vector.VectorEnv, env_id: str):
        super().__init__(envs)
        self.env_id = env_id
        self.exact = get_spec(env_id).family in EXACT_FAMILIES
        self._vector_cartpole = isinstance(envs.unwrapped, CartPoleVectorEnv)
        self._sync = isinstance(envs.unwrapped, gym.vector.SyncVectorEnv)
        n = self.num_envs
        self._starts: list[dict[str, Any] | None] = [None] * n
        self._actions: list[list[int]] = [[] for _ in range(n)]

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        if self._sync:
            sub = self.env.unwrapped.envs
            for i in range(self.num_envs):
                if isinstance(seed, int):
                    self._starts[i] = {"seed": seed + i}
                elif seed is None:
                    self._starts[i] = {"rngs": _rng_snapshot(sub[i]), "scalars": _scalars(sub[i])}
                else:
                    self._starts[i] = {"seed": seed[i]}
                self._actions[i] = []
        return self.env.reset(seed=seed, options=options)

    def step(self, actions: np.ndarray):
        if self._sync:
            sync = self.env.unwrapped
            for i in range(self.num_envs):
                if sync._autoreset_envs[i]:  # this step only resets copy i, with its generators as they are now
                    self._starts[i] = {"rngs": _rng_snapshot(sync.envs[i]), "scalars": _scalars(sync.envs[i])}
                    self._actions[i] = []
                else:
                    self._actions[i].append(int(actions[i]))
        return self.env.step(actions)

    # -- saving --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON that puts fresh copies back where these are (see :meth:`load_state_dict`)."""
        if self._vector_cartpole:
            inner = self.env.unwrapped
            stats = self.env  # gymnasium's vector RecordEpisodeStatistics
            return {
                "kind": "cartpole_vector",
                "state": inner.state.tolist(), "steps": inner.steps.tolist(),
                "prev_done": inner.prev_done.tolist(), "np_random": inner.np_random.bit_generator.state,
                "low": float(inner.low), "high": float(inner.high),
                "episode_returns": stats.episode_returns.tolist(), "episode_lengths": stats.episode_lengths.tolist(),
                "prev_dones": stats.prev_dones.tolist(), "episode_count": int(stats.episode_count),
            }
        if self._sync:
            return {"kind": "sync", "starts": self._starts, "actions": self._actions,
                    "autoreset": self.env.unwrapped._autoreset_envs.tolist()}
        return {"kind": "none"}

    def load_state_dict(self, state: dict[str, Any]) -> np.ndarray:
        """Put the copies where ``state`` says; returns the observations they are at, (N, *obs)."""
        kind = state.get("kind")
        if kind == "cartpole_vector" and self._vector_cartpole:
            return self._load_cartpole(state)
        if kind == "sync" and self._sync:
            return self._load_sync(state)
        raise RlgenError(f"the saved environment state ({kind!r}) does not fit a {type(self.env.unwrapped).__name__}")

    def _load_cartpole(self, state: dict[str, Any]) -> np.ndarray:
        inner, stats = self.env.unwrapped, self.env
        inner.np_random  # noqa: B018  (creates the generator if the env was never reset)
        inner.state = np.asarray(state["state"], dtype=np.float64)
        inner.steps = np.asarray(state["steps"], dtype=np.int32)
        inner.prev_done = np.asarray(state["prev_done"], dtype=np.bool_)
        inner.np_random.bit_generator.state = state["np_random"]
        inner.low, inner.high = state["low"], state["high"]
        stats.episode_returns = np.asarray(state["episode_returns"], dtype=np.float64)
        stats.episode_lengths = np.asarray(state["episode_lengths"], dtype=int)
        stats.prev_dones = np.asarray(state["prev_dones"], dtype=bool)
        stats.episode_count = int(state["episode_count"])
        return inner.state.T.astype(np.float32)

    def _load_sync(self, state: dict[str, Any]) -> np.ndarray:
        sync = self.env.unwrapped
        if len(state["starts"]) != self.num_envs:
            raise RlgenError(f"the saved environment state has {len(state['starts'])} copies, this run {self.num_envs}")
        for i, (start, actions) in enumerate(zip(state["starts"], state["actions"])):
            env = sync.envs[i]
            if "seed" in start:
                obs, _ = env.reset(seed=start["seed"])
            else:
                env.reset(seed=0)  # creates every generator, then they are set to the saved states
                _set_rngs(env, start["rngs"])
                _set_scalars(env, start["scalars"])
                obs, _ = env.reset()
            for action in actions:
                obs, *_ = env.step(action)
            sync._env_obs[i] = obs
            self._starts[i], self._actions[i] = start, list(actions)
        sync._autoreset_envs = np.asarray(state["autoreset"], dtype=np.bool_)
        sync._observations = concatenate(sync.single_observation_space, sync._env_obs, sync._observations)
        return np.copy(sync._observations)
