"""The rlgen/ partially observable tasks: env checkers, what they hide, and the T-maze's rules."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from rlgen.envs import get_spec, make_vector_env
from rlgen.envs.memory import TMazeEnv

MEMORY_IDS = ["rlgen/CartPoleNoVel-v0", "rlgen/AcrobotNoVel-v0", "rlgen/TMaze-v0", "rlgen/TMaze-L30-v0"]


@pytest.mark.parametrize("env_id", MEMORY_IDS)
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_env_checkers_pass_without_warnings(env_id, render_mode):
    get_spec(env_id)  # registers the namespace through the spec's family
    import rlgen.envs.memory  # noqa: F401

    env = gym.make(env_id, render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)
    env.close()


@pytest.mark.parametrize(
    ("masked_id", "full_id", "keep"),
    [("rlgen/CartPoleNoVel-v0", "CartPole-v1", [0, 2]), ("rlgen/AcrobotNoVel-v0", "Acrobot-v1", [0, 1, 2, 3])],
)
def test_masked_classic_control_shows_the_positions_only(masked_id, full_id, keep):
    import rlgen.envs.memory  # noqa: F401

    masked, full = gym.make(masked_id), gym.make(full_id)
    assert masked.spec.max_episode_steps == 500
    obs_m, _ = masked.reset(seed=3)
    obs_f, _ = full.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(300):
        np.testing.assert_array_equal(obs_m, obs_f[keep])
        action = int(rng.integers(2))
        obs_m, r_m, term_m, trunc_m, _ = masked.step(action)
        obs_f, r_f, term_f, trunc_f, _ = full.step(action)
        assert (r_m, term_m, trunc_m) == (r_f, term_f, trunc_f)
        if term_m or trunc_m:
            obs_m, _ = masked.reset(seed=4)
            obs_f, _ = full.reset(seed=4)


@pytest.mark.parametrize("length", [1, 4])
def test_tmaze_pays_for_the_cue_side_only_at_the_junction(length):
    env = TMazeEnv(corridor_length=length)
    junction_obs = set()
    for seed in range(20):
        for action in (0, 1):
            obs, info = env.reset(seed=seed)
            cue = info["cue"]
            np.testing.assert_array_equal(obs, np.eye(3, dtype=np.float32)[cue])
            for t in range(1, length + 1):
                obs, reward, terminated, truncated, _ = env.step(1 - action)  # corridor actions do nothing
                assert (reward, terminated, truncated) == (0.0, False, False)
                expected = [0, 0, 1] if t == length else [0, 0, 0]
                np.testing.assert_array_equal(obs, expected)
            junction_obs.add(obs.tobytes())
            _, reward, terminated, _, _ = env.step(action)
            assert terminated and reward == (1.0 if action == cue else 0.0)
    # Both cues lead to the very same junction observation: without memory the best is chance.
    assert len(junction_obs) == 1


def test_tmaze_cues_are_balanced_and_seeded():
    env = TMazeEnv(corridor_length=2)
    cues = [env.reset(seed=s)[1]["cue"] for s in range(400)]
    assert 0.4 < np.mean(cues) < 0.6
    assert [env.reset(seed=7)[1]["cue"] for _ in range(3)] == [env.reset(seed=7)[1]["cue"]] * 3


def test_tmaze_rejects_bad_lengths_and_render_modes():
    with pytest.raises(ValueError, match="corridor_length=0"):
        TMazeEnv(corridor_length=0)
    with pytest.raises(ValueError, match="render_mode='human'"):
        TMazeEnv(render_mode="human")


def test_registered_lengths_and_specs():
    import rlgen.envs.memory  # noqa: F401

    assert gym.make("rlgen/TMaze-L30-v0").unwrapped.corridor_length == 30
    assert gym.make("rlgen/TMaze-v0", corridor_length=7).unwrapped.corridor_length == 7
    spec = get_spec("rlgen/TMaze-L30-v0")
    assert (spec.family, spec.backbone, spec.solved_threshold, spec.random_score) == ("memory", "lstm", 0.99, 0.5)
    assert get_spec("rlgen/CartPoleNoVel-v0").solved_threshold == 475


def test_vector_env_episode_statistics():
    envs = make_vector_env("rlgen/TMaze-L5-v0", 3, seed=0)
    envs.reset(seed=0)
    for _ in range(6):
        _, _, terminations, _, infos = envs.step(np.zeros(3, dtype=np.int64))
    assert terminations.all()
    assert (infos["episode"]["l"] == 6).all()
    assert set(infos["episode"]["r"].tolist()) <= {0.0, 1.0}
    envs.close()


def test_import_rlgen_registers_its_environments_for_gym_make():
    """gymnasium 1.x's convention (as ale_py): `import rlgen; gym.register_envs(rlgen)`, then gym.make."""
    import subprocess
    import sys

    code = ("import gymnasium as gym, rlgen; gym.register_envs(rlgen); "
            "env = gym.make('rlgen/CartPoleNoVel-v0'); obs, _ = env.reset(seed=0); print(obs.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(2,)"
