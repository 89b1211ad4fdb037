"""Recurrent and transformer DQN: chunk replay, burn-in, memory resets, learning, checkpoints, CLI."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rlgen.dqn import DQNAgent, make_config
from rlgen.dqn.actors import SequenceActor
from rlgen.dqn.recurrent_networks import RecurrentQNetwork, WindowQNetwork, build_sequence_q_network
from rlgen.dqn.losses import SequenceTDLoss
from rlgen.dqn.sequence_replay import PrioritizedSequenceReplayBuffer, SequenceReplayBuffer
from rlgen.envs import make_vector_env

GAMMA = 0.9


class CounterEnv(gym.Env):
    """Observation ``[episode, step in episode, steps emitted so far, is final]``; reward = step + 1.

    Episodes last 2..9 steps; even-numbered episodes terminate, odd ones are truncated.
    """

    def __init__(self, seed: int):
        self.observation_space = gym.spaces.Box(0.0, 1e6, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._rng = np.random.default_rng(seed)
        self._episode, self._t, self._emitted, self._length = -1, 0, -1, 0

    def _obs(self, final: bool) -> np.ndarray:
        self._emitted += 1
        return np.array([self._episode, self._t, self._emitted, float(final)], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._episode += 1
        self._t = 0
        self._length = int(self._rng.integers(2, 10))
        return self._obs(False), {}

    def step(self, action):
        reward = float(self._t + 1)
        self._t += 1
        done = self._t == self._length
        terminated, truncated = done and self._episode % 2 == 0, done and self._episode % 2 == 1
        return self._obs(done), reward, terminated, truncated, {}


def _fill(buffer, num_envs: int, steps: int, seed: int = 0) -> None:
    envs = gym.vector.SyncVectorEnv([lambda i=i: CounterEnv(seed + i) for i in range(num_envs)])
    obs, _ = envs.reset(seed=seed)
    buffer.start(obs, np.zeros((num_envs, buffer.state_dim), np.float32) if buffer.state_dim else None)
    autoreset = np.zeros(num_envs, dtype=bool)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        actions = rng.integers(0, 2, size=num_envs)
        obs, rewards, terminations, truncations, _ = envs.step(actions)
        states = np.repeat(obs[:, 2:3], buffer.state_dim, axis=1) if buffer.state_dim else None
        buffer.add(actions, rewards, terminations, truncations, obs, autoreset, states)
        autoreset = terminations | truncations


@pytest.mark.parametrize("prioritized", [False, True])
def test_chunks_cross_episodes_only_at_reset_marks_and_targets_match_hand_values(prioritized):
    cls = PrioritizedSequenceReplayBuffer if prioritized else SequenceReplayBuffer
    n = 3
    buffer = cls(2 * 60, 2, (4,), np.float32, burn_in=4, sequence_length=6, n_step=n, gamma=GAMMA, state_dim=2)
    _fill(buffer, 2, 500)  # wraps the 60-slot columns many times
    rng = np.random.default_rng(1)
    batch = buffer.sample(256, rng)
    if prioritized:  # new priorities must not open chunks that were not startable
        buffer.update_priorities(batch.indices, rng.uniform(0, 5, size=256))
        batch = buffer.sample(256, rng)
    obs = batch.obs.numpy()  # (B, L, 4)
    episode, step, emitted, final = (obs[..., i] for i in range(4))
    resets = batch.resets.numpy()
    # Chronological: never across the write position into older data.
    assert (np.diff(emitted, axis=1) == 1).all()
    # A new episode inside a chunk always carries a reset mark, and marks sit only at episode starts.
    changes = np.diff(episode, axis=1) != 0
    np.testing.assert_array_equal(changes, resets[:, 1:])
    np.testing.assert_array_equal(resets, step == 0)
    # The stored state is the one written with the chunk's first observation.
    np.testing.assert_array_equal(batch.state.numpy()[:, 0], emitted[:, 0])
    # Trained steps: loss off exactly on final observations; n-step targets by hand.
    trained = buffer.burn_in + np.arange(buffer.sequence_length)
    np.testing.assert_array_equal(batch.mask.numpy(), final[:, trained] == 0)
    boot = batch.bootstrap.numpy()
    for b, j in zip(*np.nonzero(batch.mask.numpy())):
        p, q = trained[j], boot[b, j]
        m = q - p
        assert 1 <= m <= n and episode[b, q] == episode[b, p] and step[b, q] == step[b, p] + m
        assert m == n or final[b, q] == 1  # stopped early only at the episode's end
        expected = sum(GAMMA**k * (step[b, p] + k + 1) for k in range(m))
        assert batch.returns[b, j].item() == pytest.approx(expected, rel=1e-6)
        terminated = final[b, q] == 1 and episode[b, q] % 2 == 0
        assert batch.discounts[b, j].item() == pytest.approx(0.0 if terminated else GAMMA**m, rel=1e-6)
    assert batch.actions.shape == (256, buffer.sequence_length)


def test_sampling_before_a_whole_chunk_exists_explains_itself():
    buffer = SequenceReplayBuffer(100, 1, (4,), np.float32, burn_in=4, sequence_length=8, n_step=1)
    _fill(buffer, 1, 5)
    with pytest.raises(ValueError, match="learning_starts"):
        buffer.sample(4, np.random.default_rng(0))


def _config(kind: str, **fields):
    overrides = [f"backbone.kind={kind}", "backbone.hidden_sizes=[16]", "backbone.rnn_hidden_size=16",
                 "backbone.d_model=16", "backbone.n_heads=2", "backbone.n_layers=1", "backbone.tcn_channels=[16,16]",
                 "context_length=5"]
    return make_config("rlgen/CartPoleNoVel-v0", overrides=overrides, **fields)


def _net(kind: str, **fields):
    torch.manual_seed(0)
    config = _config(kind, **fields)
    return config, build_sequence_q_network(config, gym.spaces.Box(-5, 5, (2,), np.float32), 2)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_burn_in_steps_carry_no_gradient_but_do_set_the_state(kind):
    config, net = _net(kind, double_q=True, n_step=2)
    target = build_sequence_q_network(config, gym.spaces.Box(-5, 5, (2,), np.float32), 2)
    buffer = SequenceReplayBuffer(400, 2, (2,), np.float32, burn_in=5, sequence_length=6, n_step=2,
                                  state_dim=net.state_dim)
    envs = make_vector_env("rlgen/CartPoleNoVel-v0", 2, seed=0)
    actor = SequenceActor(net, 2, "cpu")
    obs, _ = envs.reset(seed=0)
    buffer.start(obs, actor.packed_state())
    for _ in range(150):
        actions = np.random.default_rng(0).integers(0, 2, size=2)
        actor.step(obs)
        obs, rewards, terms, truncs, _ = envs.step(actions)
        buffer.add(actions, rewards, terms, truncs, obs, actor.autoreset, actor.packed_state())
        actor.observe(terms, truncs)
    batch = buffer.sample(16, np.random.default_rng(0))
    obs = batch.obs.clone().requires_grad_(True)
    state = batch.state.clone().requires_grad_(True)
    loss, _, _ = SequenceTDLoss(config, first=5)(net, target, batch._replace(obs=obs, state=state))
    loss.backward()
    assert obs.grad[:, :5].abs().max() == 0
    assert state.grad is None or state.grad.abs().max() == 0
    assert obs.grad[:, 5:11].abs().sum() > 0  # the trained steps do get gradient
    # ...and the burn-in still matters: other burn-in observations change the loss.
    other = batch.obs.clone()
    other[:, :5] += 1.0
    loss2, _, _ = SequenceTDLoss(config, first=5)(net, target, batch._replace(obs=other))
    assert not torch.isclose(loss, loss2)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_batched_episode_pieces_equal_the_step_by_step_recurrence(kind):
    _, net = _net(kind)
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(6, 12, 2, generator=gen)
    for rate in (0.05, 0.3):  # few resets (one batched call) and many (fallback)
        resets = torch.rand(6, 12, generator=gen) < rate
        state = net.initial_memory(6)
        state = tuple(torch.randn_like(s) for s in state) if isinstance(state, tuple) else torch.randn_like(state)
        q = net.chunk_q(obs, resets, state, first=3)
        expected = []
        for b in range(6):
            s = tuple(x[:, b : b + 1] for x in state) if isinstance(state, tuple) else state[:, b : b + 1]
            rows = []
            for t in range(12):
                qt, s = net(obs[b : b + 1, t : t + 1], s, resets[b : b + 1, t : t + 1])
                rows.append(qt[0, 0])
            expected.append(torch.stack(rows[3:]))
        torch.testing.assert_close(q, torch.stack(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["transformer", "tcn"])
def test_windows_stop_at_episode_starts(kind):
    _, net = _net(kind)
    k = net.context_length
    obs = torch.randn(2, 14, 2)
    resets = torch.zeros(2, 14, dtype=torch.bool)
    resets[0, 7] = True
    q = net.chunk_q(obs, resets, None, first=k - 1)  # (2, 14 - k + 1, A)
    for b in range(2):
        for t in range(k - 1, 14):
            begin = 7 if (b == 0 and t >= 7) else 0
            window = obs[b, max(begin, t - k + 1) : t + 1]
            pad = k - len(window)
            windows = torch.cat([torch.zeros(pad, 2), window])[None]
            mask = (torch.arange(k) < pad)[None]
            torch.testing.assert_close(q[b, t - k + 1], net(windows, mask)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "transformer", "tcn"])
def test_vector_acting_clears_memory_exactly_at_episode_starts(kind):
    """Each copy's Q-values equal those of a fresh network fed only that copy's current episode."""
    _, net = _net(kind)
    net.eval()
    envs = make_vector_env("rlgen/CartPoleNoVel-v0", 3, seed=5)
    actor = SequenceActor(net, 3, "cpu")
    obs, _ = envs.reset(seed=5)
    episodes = [[o] for o in obs]
    rng = np.random.default_rng(0)
    starts_seen = 0
    for _ in range(60):
        q = actor.step(obs)
        for i in range(3):
            history = torch.as_tensor(np.stack(episodes[i]))[None]  # (1, t, 2)
            if isinstance(net, RecurrentQNetwork):
                expected = net(history)[0][0, -1]
            else:
                assert isinstance(net, WindowQNetwork)
                expected = net.chunk_q(history, torch.zeros(1, history.shape[1], dtype=torch.bool), None,
                                       history.shape[1] - 1)[0, 0]
            torch.testing.assert_close(q[i], expected, rtol=1e-5, atol=1e-6)
        obs, _, terms, truncs, _ = envs.step(rng.integers(0, 2, size=3))
        actor.observe(terms, truncs)
        for i in range(3):
            if actor.starts[i]:
                episodes[i] = [obs[i]]
                starts_seen += 1
            else:
                episodes[i].append(obs[i])
    assert starts_seen >= 3  # random play ends CartPole episodes every ~20 steps


def test_lstm_learns_the_short_tmaze_where_chance_is_half(tmp_path):
    config = make_config(
        "rlgen/TMaze-L5-v0", total_timesteps=2500, seed=0, eval_episodes=100, num_envs=2,
        overrides=["backbone=lstm", "backbone.hidden_sizes=[]", "backbone.rnn_hidden_size=16", "cpu_threads=1",
                   "learning_starts=300", "exploration_fraction=0.4", "learning_rate=1e-3",
                   "target_update_interval=200", "sequence_length=8", "burn_in=2"],
    )
    from rlgen.dqn.train import train

    result = train(config, device="cpu", logdir=tmp_path, progress=False)
    assert result.eval_mean >= 0.95  # a memoryless policy scores 0.5


def test_checkpoint_round_trip_of_a_recurrent_agent(tmp_path):
    config, net = _net("gru", dueling=True)
    agent = DQNAgent(config, net, gym.spaces.Box(-5, 5, (2,), np.float32))
    path = agent.save(tmp_path / "agent.safetensors")
    loaded = DQNAgent.load(path)
    assert loaded.is_sequence and loaded.num_actions == 2
    for a, b in zip(agent.q_net.state_dict().values(), loaded.q_net.state_dict().values()):
        assert torch.equal(a, b)
    rng = np.random.default_rng(0)
    for t in range(6):  # predict carries memory identically in both
        obs = rng.normal(size=(3, 2)).astype(np.float32)
        start = np.array([t == 0, t == 3, False])
        np.testing.assert_array_equal(agent.predict(obs, episode_start=start),
                                      loaded.predict(obs, episode_start=start))
    assert agent.evaluate(episodes=4, seed=1) == loaded.evaluate(episodes=4, seed=1)


def test_cli_trains_and_evaluates_a_tiny_recurrent_run(tmp_path):
    from rlgen.cli.main import cli

    runner = CliRunner()
    result = runner.invoke(cli, [
        "train-dqn", "rlgen/TMaze-L5-v0", "--total-steps", "400", "--quiet", "--logdir", str(tmp_path),
        "--set", "backbone=gru", "--set", "backbone.rnn_hidden_size=16", "--set", "backbone.hidden_sizes=[]",
        "--set", "cpu_threads=1", "--set", "learning_starts=200", "--set", "eval_episodes=5",
        "--set", "prioritized=true", "--set", "double_q=true", "--set", "n_step=2", "--set", "dueling=true",
    ])
    assert result.exit_code == 0, result.output
    run_dir = next(tmp_path.iterdir())
    assert "eval over 5 episodes" in result.output
    result = runner.invoke(cli, ["train-dqn", "rlgen/TMaze-L5-v0", "--resume", str(run_dir), "--total-steps", "600",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert "trained 600 steps" in result.output and str(run_dir) in result.output
    result = runner.invoke(cli, ["eval", str(run_dir), "--episodes", "6"])
    assert result.exit_code == 0, result.output
    assert "rlgen/TMaze-L5-v0: mean return" in result.output
    video = tmp_path / "play.gif"
    result = runner.invoke(cli, ["enjoy", str(run_dir), "--video", str(video)])
    assert result.exit_code == 0, result.output
    assert video.stat().st_size > 0
    assert DQNAgent.load(run_dir).config.backbone.kind == "gru"
