"""Behaviour of DQN training: targets, truncation, learning CartPole, checkpoints and resume."""

from __future__ import annotations

import shutil
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from rlgen.backbones import BackboneConfig
from rlgen.config import from_dict, to_dict
from rlgen.dqn import DQNAgent, DQNConfig, make_config
from rlgen.dqn.networks import build_q_network
from rlgen.dqn.replay import ReplayBatch
from rlgen.dqn.schedules import epsilon_at
from rlgen.dqn.learning import BestSnapshot, update_target
from rlgen.dqn.losses import TransitionTDLoss
from rlgen.dqn.train import train
from rlgen.training import load_checkpoint


# ----------------------------------------------------------------------------- targets


class TableQ(nn.Module):
    """A hand-made Q-network: observation id (B, 1) -> a fixed row of Q-values (B, A)."""

    def __init__(self, table: list[list[float]]):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table[obs[:, 0].long()]


ONLINE = TableQ([[0.0, 0.0, 0.3], [0.2, -1.0, 0.0], [1.0, 5.0, 0.0], [2.0, 0.0, 1.0]])
TARGET = TableQ([[9.0, 9.0, 9.0], [9.0, 9.0, 9.0], [4.0, 2.0, 3.0], [-1.0, 0.5, 3.0]])


def _batch(weights=(1.0, 1.0, 1.0)) -> ReplayBatch:
    return ReplayBatch(
        obs=torch.tensor([[0.0], [1.0], [1.0]]),
        actions=torch.tensor([2, 0, 1]),
        returns=torch.tensor([1.0, -0.5, 0.0]),
        next_obs=torch.tensor([[2.0], [3.0], [3.0]]),
        discounts=torch.tensor([0.5, 0.0, 0.25]),  # the second transition terminated
        weights=torch.tensor(weights),
        indices=np.arange(3),
    )


def _huber(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


@pytest.mark.parametrize("double_q", [False, True])
@pytest.mark.parametrize("loss", ["huber", "mse"])
def test_td_targets_double_vs_max(double_q, loss):
    # Next states 2 and 3: the online net prefers actions 1 and 0, the target net 0 and 2.
    # Double DQN scores the online choice with the target net (2.0 and -1.0); plain DQN
    # takes the target net's max (4.0 and 3.0).
    config = DQNConfig(double_q=double_q, loss=loss)
    next_values = np.array([2.0, -1.0, -1.0]) if double_q else np.array([4.0, 3.0, 3.0])
    targets = np.array([1.0, -0.5, 0.0]) + np.array([0.5, 0.0, 0.25]) * next_values
    q_taken = np.array([0.3, 0.2, -1.0])
    per_sample = _huber(targets - q_taken) if loss == "huber" else (targets - q_taken) ** 2

    value, td_errors, q_mean = TransitionTDLoss(config)(ONLINE, TARGET, _batch())
    np.testing.assert_allclose(td_errors.numpy(), targets - q_taken, rtol=1e-6)
    assert value.item() == pytest.approx(per_sample.mean(), rel=1e-6)
    assert q_mean.item() == pytest.approx(q_taken.mean(), rel=1e-6)

    ONLINE.zero_grad(), TARGET.zero_grad()
    value.backward()
    assert TARGET.table.grad is None  # targets are constants
    grad = np.zeros((4, 3))
    d = -(targets - q_taken) if loss == "mse" else -np.clip(targets - q_taken, -1, 1)
    grad[[0, 1, 1], [2, 0, 1]] = d * (2 if loss == "mse" else 1) / 3
    np.testing.assert_allclose(ONLINE.table.grad.numpy(), grad, rtol=1e-5, atol=1e-7)


def test_prioritized_loss_uses_importance_weights():
    config = DQNConfig(double_q=True, loss="mse", prioritized=True)
    weights = np.array([1.0, 0.5, 0.25])
    value, td_errors, _ = TransitionTDLoss(config)(ONLINE, TARGET, _batch(tuple(weights)))
    assert value.item() == pytest.approx((weights * td_errors.numpy() ** 2).mean(), rel=1e-6)


def test_target_update_hard_copy_and_polyak():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    update_target(online, target, tau=0.1)
    for old, new, src in zip(before, target.parameters(), online.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * src)
    update_target(online, target, tau=1.0)
    for new, src in zip(target.parameters(), online.parameters()):
        assert torch.equal(new, src)


def test_epsilon_schedules_end_points():
    config = DQNConfig(total_timesteps=1000, exploration_fraction=0.2, exploration_initial_eps=1.0,
                       exploration_final_eps=0.1)
    assert epsilon_at(config, 0) == 1.0
    assert epsilon_at(config, 100) == pytest.approx(0.55)  # SB3's get_linear_fn, halfway
    assert epsilon_at(config, 200) == pytest.approx(0.1)
    assert epsilon_at(config, 900) == pytest.approx(0.1)
    expo = replace(config, exploration_schedule="exponential")
    assert epsilon_at(expo, 0) == 1.0
    assert 0.1 < epsilon_at(expo, 100) < 0.55  # falls faster than linear
    assert epsilon_at(expo, 200) == pytest.approx(0.1)


# ----------------------------------------------------------------------------- truncation vs termination


class ConstantEnv(gym.Env):
    """One observation, reward 1 every step, five steps per episode.

    The agent cannot tell the steps apart, so the TD fixed point shows how episode
    ends are treated: a time limit (truncation) must be bootstrapped, giving
    Q = 1 / (1 - gamma); a real termination (no bootstrap on 1 step in 5) gives
    Q = 1 / (1 - 0.8 gamma) under the MSE loss.
    """

    def __init__(self, terminate: bool = False, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0, 1, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.terminate = terminate

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.ones(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.ones(1, np.float32), 1.0, self.terminate and self.t >= 5, False, {}


@pytest.fixture(scope="module")
def constant_envs():
    ids = {"RlgenTestTruncated-v0": {}, "RlgenTestTerminated-v0": {"terminate": True}}
    for env_id, kwargs in ids.items():
        if env_id not in gym.registry:
            # Truncation comes from gymnasium's TimeLimit, as for CartPole.
            gym.register(env_id, entry_point=ConstantEnv, kwargs=kwargs,
                         max_episode_steps=None if kwargs else 5)
    yield
    for env_id in ids:
        gym.registry.pop(env_id, None)


@pytest.mark.parametrize("env_id, expected", [("RlgenTestTruncated-v0", 5.0), ("RlgenTestTerminated-v0", 1 / 0.36)])
def test_train_bootstraps_on_truncation_not_termination(constant_envs, tmp_path, env_id, expected):
    gamma = 0.8
    config = make_config(
        env_id, total_timesteps=2500, num_envs=2, gamma=gamma, learning_starts=200, batch_size=64,
        learning_rate=3e-3, loss="mse", target_update_interval=50, train_freq=1, gradient_steps=1,
        exploration_fraction=0.0, exploration_final_eps=1.0, eval_episodes=0, max_grad_norm=0.0,
        backbone={"kind": "mlp", "hidden_sizes": [16]},
    )
    result = train(config, device="cpu", logdir=tmp_path, progress=False)
    q = DQNAgent.load(result.checkpoint).q_net(torch.ones(1, 1))
    assert q.detach().numpy() == pytest.approx(np.full((1, 2), expected), abs=0.3)


# ----------------------------------------------------------------------------- learning, checkpoints, resume


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """The CartPole-v1 preset on a 20k-step budget (about 10 s on a quiet 2-core machine)."""
    logdir = tmp_path_factory.mktemp("runs")
    return DQNAgent.train("CartPole-v1", device="cpu", logdir=logdir, total_timesteps=20_000, seed=0,
                          eval_episodes=20)


def test_short_cartpole_run_beats_random(cartpole_run):
    random_score = 22.3  # envs/classic_control.yml
    # Whole vector steps: the budget is met, overshooting by less than one step of all copies.
    num_envs = cartpole_run.config.num_envs
    assert 20_000 <= cartpole_run.last_result.global_step < 20_000 + num_envs
    assert cartpole_run.last_result.eval_mean > 4 * random_score
    mean, _ = cartpole_run.evaluate(episodes=10, seed=123)
    assert mean > 4 * random_score


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_train_checkpoint_and_agent_save_load_are_bit_exact(cartpole_run, tmp_path):
    raw = safetensors.torch.load_file(cartpole_run.last_result.checkpoint)
    loaded = DQNAgent.load(cartpole_run.run_dir)
    _assert_same(_state(loaded.q_net), {k[len("model/q_net/"):]: v for k, v in raw.items()
                                        if k.startswith("model/q_net/")})
    assert to_dict(loaded.config) == to_dict(cartpole_run.config)

    path = loaded.save(tmp_path / "agent.safetensors")
    again = DQNAgent.load(path)
    _assert_same(_state(again.q_net), _state(loaded.q_net))
    assert to_dict(again.config) == to_dict(loaded.config)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(obs), loaded.predict(obs))
    assert again.predict(obs[0]) == loaded.predict(obs)[0]


def test_agent_save_load_dueling_cnn_on_uint8_images(tmp_path):
    backbone = BackboneConfig(kind="small_cnn", channels=[4], features_dim=8)
    config = DQNConfig(env_id="MinAtar/Breakout-v1", dueling=True, backbone=backbone)
    space = gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)
    torch.manual_seed(0)
    agent = DQNAgent(config, build_q_network(config, space, 3), space)
    again = DQNAgent.load(agent.save(tmp_path / "cnn"))
    _assert_same(_state(again.q_net), _state(agent.q_net))
    assert again.q_net.dueling and again.num_actions == 3 and again.obs_space.dtype == np.uint8
    obs = np.random.default_rng(0).integers(0, 2, size=(16, 4, 10, 10), dtype=np.uint8)
    with torch.no_grad():
        assert torch.equal(again.q_net(torch.as_tensor(obs)), agent.q_net(torch.as_tensor(obs)))



def test_dueling_head_is_one_linear_and_loads_the_earlier_two_head_weights():
    config = DQNConfig(env_id="CartPole-v1", dueling=True, backbone=BackboneConfig(kind="mlp", hidden_sizes=[8]))
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    torch.manual_seed(0)
    net = build_q_network(config, space, 3)
    obs = torch.randn(5, 4)
    features = net.backbone(obs)
    out = features @ net.head.weight.T + net.head.bias
    value, advantage = out[:, :1], out[:, 1:]  # V's row first
    assert torch.allclose(net(obs), value + advantage - advantage.mean(1, keepdim=True), atol=1e-6)
    # A checkpoint of the earlier layout: separate value (1 row) and advantage (3 rows) heads.
    old = {k: v for k, v in net.state_dict().items() if not k.startswith("head.")}
    old |= {"value.weight": net.head.weight[:1], "value.bias": net.head.bias[:1],
            "advantage.weight": net.head.weight[1:], "advantage.bias": net.head.bias[1:]}
    torch.manual_seed(1)
    fresh = build_q_network(config, space, 3)
    assert not torch.allclose(fresh(obs), net(obs))
    fresh.load_state_dict(old)
    assert torch.equal(fresh(obs), net(obs))

def test_resume_loads_identical_state_and_continues_the_step_count(cartpole_run, tmp_path):
    run_dir = shutil.copytree(cartpole_run.run_dir, tmp_path / cartpole_run.run_dir.name)
    ckpt_path = run_dir / "checkpoint.safetensors"
    saved = safetensors.torch.load_file(ckpt_path)
    meta = load_checkpoint(ckpt_path).meta
    done = cartpole_run.last_result.global_step  # 20k rounded up to whole vector steps
    assert meta["step"] == done
    config = replace(from_dict(DQNConfig, meta["config"]), eval_episodes=0)

    # Resuming at the end of the budget takes no step: the saved state must come back unchanged.
    same = train(config, device="cpu", resume=run_dir, progress=False)
    assert same.run_dir == run_dir and same.global_step == done
    resaved = safetensors.torch.load_file(same.checkpoint)
    _assert_same({k: v for k, v in resaved.items() if not k.startswith("rng/")},
                 {k: v for k, v in saved.items() if not k.startswith("rng/")})
    assert load_checkpoint(same.checkpoint).meta["update_step"] == meta["update_step"]

    # A larger budget continues from step 20k, with updates on top of the loaded ones.
    more = train(replace(config, total_timesteps=21_000), device="cpu", resume=run_dir, progress=False)
    assert more.run_dir == run_dir and 21_000 <= more.global_step < 21_000 + config.num_envs
    new_meta = load_checkpoint(more.checkpoint).meta
    assert new_meta["step"] == more.global_step
    assert new_meta["update_step"] > meta["update_step"]
    changed = safetensors.torch.load_file(more.checkpoint)
    # The weights may be keep_best's snapshot again (it is saved with the run); Adam's moments moved on.
    moments = [k for k in saved if k.startswith("optim/") and "exp_avg" in k]
    assert moments and any(not torch.equal(changed[k], saved[k]) for k in moments)


def test_keep_best_goes_back_to_the_better_snapshot_and_logs_it():
    class Scalars:
        def __init__(self):
            self.logged = {}

        def scalar(self, tag, value, step):
            self.logged[tag] = (value, step)

    q_net, target_net = nn.Linear(2, 2), nn.Linear(2, 2)
    best = BestSnapshot(window=3)
    best.observe([100.0, 200.0], q_net, global_step=10)  # fewer episodes than the window: ignored
    assert best.state is None
    best.observe([100.0, 200.0, 300.0], q_net, global_step=20)
    good = _state(q_net)
    with torch.no_grad():
        q_net.weight.add_(1.0)
    best.observe([50.0, 50.0, 50.0], q_net, global_step=30)  # worse: the snapshot stays
    logger = Scalars()
    best.finish(best.training_score([50.0, 50.0, 50.0]), q_net, target_net, logger, global_step=40)
    _assert_same(_state(q_net), good)
    _assert_same(_state(target_net), good)
    assert logger.logged == {"charts/kept_best_step": (20, 40), "charts/kept_best_return": (200.0, 40)}
    # A final network at least as good as the snapshot is kept as it is.
    with torch.no_grad():
        q_net.weight.add_(1.0)
    moved, logger = _state(q_net), Scalars()
    best.finish(best.training_score([300.0, 300.0, 300.0]), q_net, target_net, logger, global_step=50)
    _assert_same(_state(q_net), moved)
    assert logger.logged == {}
