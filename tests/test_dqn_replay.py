"""Behaviour of DQN replay: sum tree, prioritized weights, n-step returns, autoreset slots, frame stacks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlgen.dqn.replay import PrioritizedReplayBuffer, ReplayBuffer
from rlgen.dqn.sum_tree import SumTree

# ----------------------------------------------------------------------------- sum tree


def _check_tree_sums(tree: SumTree) -> None:
    internal = np.arange(tree.first_leaf)
    np.testing.assert_array_equal(tree.nodes[internal], tree.nodes[2 * internal + 1] + tree.nodes[2 * internal + 2])


def test_sum_tree_samples_in_proportion_to_priority():
    priorities = np.array([0.0, 1.0, 2.0, 3.0, 0.5, 4.0, 0.0, 7.0, 1.5, 1.0])  # 10 leaves of a 16-leaf tree
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), priorities)
    rng = np.random.default_rng(0)
    draws = np.concatenate([tree.sample(250, rng) for _ in range(400)])  # 100k draws
    counts = np.bincount(draws, minlength=len(priorities))
    assert counts[priorities == 0].sum() == 0  # zero priority is never drawn
    expected = len(draws) * priorities / priorities.sum()
    nonzero = priorities > 0
    chi2 = (((counts - expected) ** 2)[nonzero] / expected[nonzero]).sum()
    # 99.9% quantile of chi-square with 7 degrees of freedom is 24.3; stratified
    # sampling has less variance than multinomial draws, so this is loose.
    assert chi2 < 24.3, (counts, expected)


def test_sum_tree_update_keeps_sums_and_find_matches_prefix_sums():
    rng = np.random.default_rng(1)
    tree = SumTree(13)
    leaves = np.zeros(13)
    for _ in range(50):
        idx = rng.choice(13, size=rng.integers(1, 6), replace=False)
        values = rng.uniform(0.0, 5.0, size=len(idx)) * (rng.random(len(idx)) > 0.2)
        tree.update(idx, values)
        leaves[idx] = values
        _check_tree_sums(tree)
        assert tree.total == pytest.approx(leaves.sum(), rel=1e-12)
        np.testing.assert_array_equal(tree.leaves(np.arange(13)), leaves)
    assert (tree.nodes[tree.first_leaf + 13 :] == 0).all()  # padding leaves stay empty
    mass = rng.uniform(0, tree.total, size=1000)
    expected = np.searchsorted(np.cumsum(leaves), mass, side="right")
    np.testing.assert_array_equal(tree.find(mass), expected)


def test_sum_tree_sampling_empty_tree_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        SumTree(4).sample(2, np.random.default_rng(0))


# ----------------------------------------------------------------------------- prioritized buffer


def _fill(buffer: ReplayBuffer, count: int) -> None:
    """``count`` steps of one never-ending episode; obs = slot number, reward = slot number."""
    buffer.start(np.zeros((1, 1), np.float32))
    no = np.zeros(1, dtype=bool)
    for i in range(count):
        buffer.add(np.array([i % 2]), np.array([float(i)]), no, no, np.full((1, 1), i + 1, np.float32), no)


def test_prioritized_weights_match_hand_computation():
    buffer = PrioritizedReplayBuffer(16, 1, (1,), np.float32, alpha=0.5, eps=0.01)
    _fill(buffer, 5)
    # New transitions enter with the largest priority so far (1.0); the newest frame has none yet.
    np.testing.assert_array_equal(buffer.priorities.tree.leaves(np.arange(6)), [1, 1, 1, 1, 1, 0])

    td = np.array([0.5, -1.0, 2.0, 0.0, 3.0])
    buffer.update_priorities(np.arange(5), td)
    p = (np.abs(td) + 0.01) ** 0.5
    np.testing.assert_allclose(buffer.priorities.tree.leaves(np.arange(5)), p, rtol=1e-12)

    beta = 0.4
    batch = buffer.sample(64, np.random.default_rng(0), beta=beta)
    probs = p[batch.indices] / p.sum()
    expected = (5 * probs) ** -beta
    expected /= expected.max()
    np.testing.assert_allclose(batch.weights.numpy(), expected, rtol=1e-6)
    # The weights belong to the transitions returned with them.
    np.testing.assert_array_equal(batch.obs.numpy()[:, 0], batch.indices)
    np.testing.assert_array_equal(batch.returns.numpy(), batch.indices.astype(np.float32))

    # The next transition enters with the new maximum priority.
    no = np.zeros(1, dtype=bool)
    buffer.add(np.array([0]), np.array([5.0]), no, no, np.full((1, 1), 6, np.float32), no)
    assert buffer.priorities.tree.leaves(np.array([5]))[0] == pytest.approx(p.max())


def test_uniform_buffer_weights_are_ones():
    buffer = ReplayBuffer(16, 1, (1,), np.float32)
    _fill(buffer, 5)
    batch = buffer.sample(32, np.random.default_rng(0))
    np.testing.assert_array_equal(batch.weights.numpy(), np.ones(32, np.float32))
    assert set(batch.indices) <= set(range(5))


# ----------------------------------------------------------------------------- n-step returns


def _hand_stream(buffer: ReplayBuffer) -> None:
    """One env, written as gymnasium 1.x's next-step autoreset emits it.

    slot: obs  reward  end
      0    10    1
      1    11    2
      2    12    3     terminated -> final obs 13
      3    13    0     autoreset step (action ignored) -> reset obs 20
      4    20    4
      5    21    5     truncated -> final obs 22
      6    22    0     autoreset step -> reset obs 30
      7    30    6
      8    31    7
      9    32    8
     10    33    9
     11    34          newest frame, no transition yet
    """
    steps = [  # (reward, terminated, truncated, next_obs, autoreset)
        (1, 0, 0, 11, 0), (2, 0, 0, 12, 0), (3, 1, 0, 13, 0), (0, 0, 0, 20, 1),
        (4, 0, 0, 21, 0), (5, 0, 1, 22, 0), (0, 0, 0, 30, 1),
        (6, 0, 0, 31, 0), (7, 0, 0, 32, 0), (8, 0, 0, 33, 0), (9, 0, 0, 34, 0),
    ]
    buffer.start(np.array([[10.0]], np.float32))
    for i, (r, term, trunc, nxt, auto) in enumerate(steps):
        buffer.add(np.array([i % 3]), np.array([float(r)]), np.array([bool(term)]), np.array([bool(trunc)]),
                   np.array([[float(nxt)]], np.float32), np.array([bool(auto)]))


# slot -> (obs, n-step return, discount, next_obs) with n = 3, gamma = 0.5
HAND_TARGETS = {
    0: (10, 1 + 0.5 * 2 + 0.25 * 3, 0.0, 13),  # terminates inside the window: no bootstrap
    1: (11, 2 + 0.5 * 3, 0.0, 13),
    2: (12, 3, 0.0, 13),
    4: (20, 4 + 0.5 * 5, 0.25, 22),  # truncated after m = 2 steps: bootstrap from the final obs, gamma^2
    5: (21, 5, 0.5, 22),
    7: (30, 6 + 0.5 * 7 + 0.25 * 8, 0.125, 33),  # a full window
    8: (31, 7 + 0.5 * 8 + 0.25 * 9, 0.125, 34),
    9: (32, 8 + 0.5 * 9, 0.25, 34),  # the window reaches the newest frame: bootstrap from it
    10: (33, 9, 0.5, 34),
}


@pytest.mark.parametrize("buffer_cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_n_step_returns_match_hand_computation(buffer_cls):
    buffer = buffer_cls(64, 1, (1,), np.float32, n_step=3, gamma=0.5)
    _hand_stream(buffer)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        batch = buffer.sample(32, rng)
        for j, slot in enumerate(batch.indices):
            obs, ret, discount, next_obs = HAND_TARGETS[int(slot)]  # KeyError = an autoreset/newest slot
            assert batch.obs[j, 0] == obs
            assert batch.returns[j].item() == pytest.approx(ret)
            assert batch.discounts[j].item() == pytest.approx(discount)
            assert batch.next_obs[j, 0] == next_obs
            assert batch.actions[j] == int(slot) % 3
            seen.add(int(slot))
    assert seen == set(HAND_TARGETS)  # every real transition is sampled; slots 3, 6, 11 never


def test_one_step_targets_bootstrap_on_truncation_only():
    buffer = ReplayBuffer(64, 1, (1,), np.float32, n_step=1, gamma=0.5)
    _hand_stream(buffer)
    batch = buffer.sample(256, np.random.default_rng(0))
    by_slot = {int(s): j for j, s in enumerate(batch.indices)}
    assert batch.discounts[by_slot[2]] == 0.0  # terminated
    assert batch.discounts[by_slot[5]] == 0.5 and batch.next_obs[by_slot[5], 0] == 22  # truncated
    assert batch.discounts[by_slot[4]] == 0.5 and batch.next_obs[by_slot[4], 0] == 21
    assert not {3, 6, 11} & set(by_slot)


class ScriptedEnv(gym.Env):
    """Random rewards and episode ends (terminated or truncated); obs = a unique id of the step."""

    def __init__(self, copy: int, image: bool = False):
        self.copy = copy
        self.image = image
        self.rng = np.random.default_rng(100 + copy)
        self.action_space = gym.spaces.Discrete(3)
        if image:
            self.observation_space = gym.spaces.Box(0, 255, (2, 3), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.episode = -1

    def _obs(self):
        if self.image:  # a (2, 3) frame naming copy, episode and step
            frame = np.zeros((2, 3), np.uint8)
            frame[0, 0], frame[0, 1], frame[0, 2] = self.copy, self.episode % 256, self.t
            return frame
        return np.array([self.copy * 100_000 + self.episode * 100 + self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        self.length = int(self.rng.integers(1, 9))
        self.truncate = bool(self.rng.random() < 0.5)
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = float(self.rng.integers(-3, 4))
        end = self.t >= self.length
        return self._obs(), reward, end and not self.truncate, end and self.truncate, {}


def test_n_step_targets_match_a_reference_on_a_vector_env():
    """Two copies with random episode ends through SyncVectorEnv, checked against per-episode sums."""
    n, gamma, num_envs = 4, 0.9, 2
    envs = gym.vector.SyncVectorEnv([lambda i=i: ScriptedEnv(i) for i in range(num_envs)])
    buffer = ReplayBuffer(400, num_envs, (1,), np.float32, n_step=n, gamma=gamma)
    obs, _ = envs.reset(seed=0)
    buffer.start(obs)
    autoreset = np.zeros(num_envs, dtype=bool)
    log = [[] for _ in range(num_envs)]  # per copy: its real transitions in order
    for _ in range(150):
        actions = envs.action_space.sample()
        next_obs, rewards, terms, truncs, _ = envs.step(actions)
        buffer.add(actions, rewards, terms, truncs, next_obs, autoreset)
        for e in range(num_envs):
            if not autoreset[e]:
                log[e].append((obs[e, 0], rewards[e], terms[e], terms[e] or truncs[e], next_obs[e, 0]))
        autoreset = terms | truncs
        obs = next_obs
    reference = {}
    for e in range(num_envs):
        for i, (o, *_rest) in enumerate(log[e]):
            ret, discount = 0.0, 1.0
            for k in range(n):
                if i + k >= len(log[e]):
                    break
                _, r, term, done, nxt = log[e][i + k]
                ret += gamma**k * r
                discount = 0.0 if term else gamma ** (k + 1)
                if done:
                    break
            reference[o] = (ret, discount, nxt)
    batch = buffer.sample(2000, np.random.default_rng(0))
    assert len(set(batch.obs[:, 0].tolist())) > 0.9 * len(reference)
    for j in range(2000):
        ret, discount, nxt = reference[batch.obs[j, 0].item()]
        assert batch.returns[j].item() == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert batch.discounts[j].item() == pytest.approx(discount, rel=1e-6)
        assert batch.next_obs[j, 0].item() == nxt


# ----------------------------------------------------------------------------- frame stacks


@pytest.mark.parametrize("buffer_cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_frame_stacks_rebuilt_from_newest_frames_equal_gymnasium_stacks(buffer_cls):
    """Only the newest frame is stored; stacks across episode starts and buffer wrap-around
    must equal FrameStackObservation's (padding by repeating the reset frame)."""
    stack, num_envs = 4, 2
    make = [lambda i=i: gym.wrappers.FrameStackObservation(ScriptedEnv(i, image=True), stack)
            for i in range(num_envs)]
    envs = gym.vector.SyncVectorEnv(make)
    assert envs.single_observation_space.shape == (stack, 2, 3)
    buffer = buffer_cls(2 * 23, num_envs, (stack, 2, 3), np.uint8, frame_stack=stack)
    assert buffer.frames.shape == (23, num_envs, 2, 3)  # one frame per slot, not four
    obs, _ = envs.reset(seed=0)
    buffer.start(obs)
    truth = {0: obs.copy()}  # slot -> the true stacked observations in it
    autoreset = np.zeros(num_envs, dtype=bool)
    rng = np.random.default_rng(0)
    for step in range(1, 140):  # wraps the 23-slot buffer six times
        actions = envs.action_space.sample()
        next_obs, rewards, terms, truncs, _ = envs.step(actions)
        buffer.add(actions, rewards, terms, truncs, next_obs, autoreset)
        truth[step % 23] = next_obs.copy()
        autoreset = terms | truncs
        if step % 10 == 0 and step > 30:
            batch = buffer.sample(64, rng)
            t, env = np.divmod(batch.indices, num_envs)
            for j in range(64):
                np.testing.assert_array_equal(batch.obs[j].numpy(), truth[t[j]][env[j]])
                np.testing.assert_array_equal(batch.next_obs[j].numpy(), truth[(t[j] + 1) % 23][env[j]])
            assert batch.obs.dtype == batch.next_obs.dtype == torch.uint8


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.float32])
def test_sampled_observations_keep_the_env_dtype(dtype):
    """CNNs scale uint8 by 1/255 but use bool and float as they are, so replay must not change
    the dtype between acting and learning (e.g. MinAtar's bool grids stored as uint8)."""
    buffer = ReplayBuffer(32, 2, (3, 5, 5), dtype)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 2, size=(2, 3, 5, 5)).astype(dtype) for _ in range(6)]
    buffer.start(frames[0])
    no = np.zeros(2, dtype=bool)
    for frame in frames[1:]:
        buffer.add(np.zeros(2, np.int64), np.zeros(2, np.float32), no, no, frame, no)
    batch = buffer.sample(16, rng)
    assert batch.obs.dtype == batch.next_obs.dtype == torch.from_numpy(frames[0]).dtype
    t, env = np.divmod(batch.indices, 2)
    for j in range(16):
        np.testing.assert_array_equal(batch.obs[j].numpy(), frames[t[j]][env[j]])


@pytest.mark.parametrize("buffer_cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_replay_save_load_round_trip_samples_identically(buffer_cls, tmp_path):
    """A resumed run continues from the same replay: same transitions, same priorities."""
    def make():
        return buffer_cls(24, 1, (1,), np.float32, n_step=3, gamma=0.5)

    buffer = make()
    _hand_stream(buffer)
    if buffer_cls is PrioritizedReplayBuffer:
        buffer.update_priorities(np.array([0, 4, 7, 9]), np.array([3.0, 0.1, -2.0, 0.5]))
    buffer.save(tmp_path / "replay.safetensors")
    restored = make()
    restored.load(tmp_path / "replay.safetensors")
    assert (restored.pos, restored.full, len(restored)) == (buffer.pos, buffer.full, len(buffer))
    a = buffer.sample(64, np.random.default_rng(5), beta=0.4)
    b = restored.sample(64, np.random.default_rng(5), beta=0.4)
    np.testing.assert_array_equal(a.indices, b.indices)
    for name in ("obs", "actions", "returns", "next_obs", "discounts", "weights"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    if buffer_cls is PrioritizedReplayBuffer:
        np.testing.assert_array_equal(restored.priorities.tree.nodes, buffer.priorities.tree.nodes)
        assert restored.priorities.max_priority == buffer.priorities.max_priority
