"""Make vectorised Gymnasium environments for any family described in ``envs/``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from rlgen.envs.specs import EnvSpec, get_spec
from rlgen.errors import InputError, RlgenError

# Tasks whose gymnasium implementation steps all copies in one NumPy call.
_NATIVE_VECTOR = {"CartPole-v1"}


def _require(module: str, spec: EnvSpec) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise RlgenError(
            f"{spec.env_id} needs the `{module}` package, which is not installed: {spec.requires}"
        ) from exc


def make_env(spec: EnvSpec, *, training: bool, render_mode: str | None = None) -> gym.Env:
    """One wrapped environment of ``spec``'s family (no vectorisation)."""
    if spec.family == "minatar":
        _require("minatar", spec)
        from minatar.gym import register_envs

        from rlgen.envs.minatar import MinAtarObservation

        if spec.env_id not in gym.registry:
            register_envs()
        env = gym.make(spec.env_id, **spec.options)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        # MinAtar's own renderer needs seaborn; MinAtarObservation renders instead.
        return MinAtarObservation(env, render_mode=render_mode)
    if spec.family == "atari":
        _require("ale_py", spec)
        _require("cv2", spec)
        import ale_py

        from rlgen.envs.atari import ClipRewardSign, EpisodicLife

        gym.register_envs(ale_py)
        options = {"frameskip": 1, "repeat_action_probability": 0.25, **spec.options}
        env = gym.make(spec.env_id, render_mode=render_mode, **options)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
        if training:
            env = EpisodicLife(env)
            env = ClipRewardSign(env)
        return gym.wrappers.FrameStackObservation(env, spec.frame_stack)
    if spec.env_id.startswith("rlgen/"):
        import rlgen.envs.memory  # noqa: F401  (registers the rlgen/ namespace)
    if spec.env_id.startswith("LunarLander"):
        _require("Box2D", spec)
    env = gym.make(spec.env_id, render_mode=render_mode, **spec.options)
    return gym.wrappers.RecordEpisodeStatistics(env)


def make_vector_env(
    env_id: str,
    num_envs: int,
    seed: int | None = None,
    *,
    training: bool = True,
    render_mode: str | None = None,
) -> gym.vector.VectorEnv:
    """A vector env with gymnasium 1.x next-step autoreset and ``info["episode"]`` statistics.

    Args:
        env_id: any id in ``envs/*.yml`` or gymnasium's registry.
        num_envs: copies stepped together.
        seed: seeds copy ``i`` with ``seed + i`` at the first reset.
        training: Atari only: terminal on life loss and reward clipping.
    """
    if num_envs < 1:
        raise InputError(f"num_envs={num_envs} must be >= 1")
    spec = get_spec(env_id)
    if env_id in _NATIVE_VECTOR and render_mode is None:
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **spec.options)
        envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    else:
        factory: Callable[[], gym.Env] = lambda: make_env(spec, training=training, render_mode=render_mode)
        envs = gym.vector.SyncVectorEnv([factory for _ in range(num_envs)])
    check_spaces(env_id, envs.single_observation_space, envs.single_action_space)
    if seed is not None:
        envs.action_space.seed(seed)
    envs.metadata = {**envs.metadata}
    return envs


def check_spaces(env_id: str, obs_space: gym.Space, action_space: gym.Space) -> None:
    """DQN needs a Box observation and a Discrete action space; say so clearly otherwise."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise RlgenError(
            f"{env_id} has a {type(action_space).__name__} action space; DQN needs discrete actions "
            "(Discrete). For continuous control use an actor-critic method such as SB3's SAC or TD3."
        )
    if not isinstance(obs_space, gym.spaces.Box):
        raise RlgenError(
            f"{env_id} has a {type(obs_space).__name__} observation space; rlgen's backbones take Box "
            "observations. Flatten it first (gymnasium.wrappers.FlattenObservation)."
        )
    if obs_space.dtype not in (np.float32, np.float64, np.uint8, np.int8, np.int32, np.int64, np.bool_):
        raise RlgenError(f"{env_id} has observations of dtype {obs_space.dtype}, which rlgen cannot store")
