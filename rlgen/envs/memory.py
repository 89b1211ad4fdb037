"""Partially observable tasks under gymnasium's ``rlgen/`` namespace: they need memory.

- ``rlgen/CartPoleNoVel-v0``: CartPole-v1 that shows only the cart position and
  the pole angle (the two velocities are dropped), 500-step limit.
- ``rlgen/AcrobotNoVel-v0``: Acrobot-v1 that shows only the cos/sin of the two
  joint angles (the angular velocities are dropped), 500-step limit.
- ``rlgen/TMaze-v0`` (``corridor_length`` kwarg) and ``rlgen/TMaze-L{L}-v0``:
  a passive T-maze (Bakker 2002; Ni et al. 2023): a cue at step 0 says which
  of two actions pays at the junction ``L`` steps later; in between every
  observation is the same. A feed-forward policy is at chance (mean return
  0.5); one that remembers the cue gets 1.

Importing this module registers them (``rlgen.envs.factory`` does so for ids
starting with ``rlgen/``); registering twice is harmless.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.errors import InputError

TMAZE_LENGTHS = (5, 10, 30, 50, 100)


class MaskedObservationEnv(gym.Env):
    """An environment that shows only the observation components ``keep`` of the one it holds.

    Composition rather than a wrapper, so that ``unwrapped`` is this task (the
    env checkers and gymnasium's registry see one environment, not a stack).
    """

    def __init__(self, env: gym.Env, keep: tuple[int, ...]):
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box) and len(space.shape) == 1
        self.env = env
        self.keep = np.asarray(keep, dtype=np.int64)
        self.observation_space = gym.spaces.Box(space.low[self.keep], space.high[self.keep], dtype=space.dtype)
        self.action_space = env.action_space
        self.metadata = env.metadata
        self.render_mode = env.render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self.env.reset(seed=seed, options=options)
        return obs[self.keep], info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs[self.keep], reward, terminated, truncated, info

    def render(self):
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def cartpole_no_velocity(render_mode: str | None = None) -> gym.Env:
    """CartPole with observation (x, theta): cart velocity and pole angular velocity removed."""
    from gymnasium.envs.classic_control import CartPoleEnv

    return MaskedObservationEnv(CartPoleEnv(render_mode=render_mode), keep=(0, 2))


def acrobot_no_velocity(render_mode: str | None = None) -> gym.Env:
    """Acrobot with observation (cos t1, sin t1, cos t2, sin t2): both angular velocities removed."""
    from gymnasium.envs.classic_control import AcrobotEnv

    return MaskedObservationEnv(AcrobotEnv(render_mode=render_mode), keep=(0, 1, 2, 3))


class TMazeEnv(gym.Env):
    """Passive T-maze: remember a cue for ``corridor_length`` steps, then pick the side it showed.

    Observation, a float32 vector (3,): ``[cue_left, cue_right, at_junction]``.
    It is ``[1, 0, 0]`` or ``[0, 1, 0]`` at step 0 (the cue), ``[0, 0, 0]`` in the
    corridor (steps 1 .. L-1) and ``[0, 0, 1]`` at the junction (step L).
    Actions: 0 = left, 1 = right. They do nothing in the corridor (the agent
    walks on regardless, so the task tests memory, not exploration); at the
    junction the episode ends with reward 1 when the action matches the cue,
    else 0. Episodes last exactly ``L + 1`` steps.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, corridor_length: int = 10, render_mode: str | None = None):
        if not isinstance(corridor_length, int) or isinstance(corridor_length, bool) or corridor_length < 1:
            raise InputError(f"corridor_length={corridor_length!r} must be an int >= 1")
        if render_mode not in (None, "rgb_array"):
            raise InputError(f"render_mode={render_mode!r} is not supported; use None or 'rgb_array'")
        self.corridor_length = corridor_length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._cue = 0
        self._t = 0
        self._chosen: int | None = None

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        elif self._t == self.corridor_length:
            obs[2] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(2))
        self._t = 0
        self._chosen = None
        return self._obs(), {"cue": self._cue}

    def step(self, action):
        if not self.action_space.contains(action):
            raise InputError(f"action {action!r} is not in {self.action_space}")
        if self._t == self.corridor_length:
            self._chosen = int(action)
            reward = 1.0 if self._chosen == self._cue else 0.0
            return self._obs(), reward, True, False, {"cue": self._cue, "success": reward > 0}
        self._t += 1
        return self._obs(), 0.0, False, False, {"cue": self._cue}

    def render(self) -> np.ndarray | None:
        """A strip of cells: the cue colour at the left end, the agent in white, the chosen arm lit."""
        if self.render_mode != "rgb_array":
            return None
        cell, length = 8, self.corridor_length + 1
        image = np.full((3 * cell, length * cell, 3), 40, dtype=np.uint8)  # (H, W, 3)
        image[cell : 2 * cell] = 90  # the corridor row
        cue_colour = (220, 60, 60) if self._cue == 0 else (60, 60, 220)
        image[cell : 2 * cell, :cell] = cue_colour
        junction = slice((length - 1) * cell, length * cell)
        image[:cell, junction] = (220, 60, 60)  # left arm (top), red
        image[2 * cell :, junction] = (60, 60, 220)  # right arm (bottom), blue
        row = cell if self._chosen is None else (0 if self._chosen == 0 else 2 * cell)
        col = min(self._t, length - 1) * cell
        image[row + 2 : row + cell - 2, col + 2 : col + cell - 2] = 255
        return image


def register_memory_envs() -> None:
    """Register the ``rlgen/`` tasks with gymnasium (idempotent)."""
    entries: dict[str, dict[str, Any]] = {
        "rlgen/CartPoleNoVel-v0": dict(
            entry_point="rlgen.envs.memory:cartpole_no_velocity", max_episode_steps=500, reward_threshold=475.0
        ),
        "rlgen/AcrobotNoVel-v0": dict(
            entry_point="rlgen.envs.memory:acrobot_no_velocity", max_episode_steps=500, reward_threshold=-100.0
        ),
        "rlgen/TMaze-v0": dict(entry_point="rlgen.envs.memory:TMazeEnv", reward_threshold=1.0),
    }
    for length in TMAZE_LENGTHS:
        entries[f"rlgen/TMaze-L{length}-v0"] = dict(
            entry_point="rlgen.envs.memory:TMazeEnv", reward_threshold=1.0, kwargs={"corridor_length": length}
        )
    for env_id, kwargs in entries.items():
        if env_id not in gym.registry:
            gym.register(env_id, **kwargs)


register_memory_envs()
