"""Vector envs saved mid-episode continue exactly where they were (the basis of exact resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlgen.envs import make_vector_env
from rlgen.envs.resumable import ResumableVectorEnv


def _play(envs, rng, steps):
    out = []
    for _ in range(steps):
        actions = rng.integers(0, envs.single_action_space.n, size=envs.num_envs)
        obs, rewards, terms, truncs, infos = envs.step(actions)
        episode = infos["episode"]["r"][infos["_episode"]].tolist() if "episode" in infos else []
        out.append((obs.copy(), rewards.copy(), terms.copy(), truncs.copy(), episode))
    return out


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "rlgen/CartPoleNoVel-v0", "rlgen/TMaze-L5-v0",
                                    "MinAtar/Breakout-v1", "MinAtar/Asterix-v1"])
def test_a_restored_vector_env_continues_exactly(env_id):
    envs = ResumableVectorEnv(make_vector_env(env_id, 3, seed=7), env_id)
    assert envs.exact
    envs.reset(seed=7)
    rng = np.random.default_rng(0)
    _play(envs, rng, 700)  # several episodes ended and autoreset on every copy
    state = json.loads(json.dumps(envs.state_dict()))  # what a checkpoint stores
    rng_state = rng.bit_generator.state
    expected = _play(envs, rng, 400)

    fresh = ResumableVectorEnv(make_vector_env(env_id, 3, seed=7), env_id)
    fresh.load_state_dict(state)
    rng.bit_generator.state = rng_state
    got = _play(fresh, rng, 400)
    for (a_obs, a_r, a_t, a_tr, a_ep), (b_obs, b_r, b_t, b_tr, b_ep) in zip(expected, got):
        np.testing.assert_array_equal(a_obs, b_obs)
        np.testing.assert_array_equal(a_r, b_r)
        np.testing.assert_array_equal(a_t, b_t)
        np.testing.assert_array_equal(a_tr, b_tr)
        assert a_ep == b_ep  # episode statistics carried over too
    assert any(ep for *_, ep in got)


def test_atari_says_it_cannot_be_restored_exactly():
    pytest.importorskip("ale_py")
    envs = ResumableVectorEnv(make_vector_env("ALE/Pong-v5", 1, seed=0), "ALE/Pong-v5")
    assert not envs.exact
