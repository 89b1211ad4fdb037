"""PQN: Q(lambda) targets by hand, learning on CartPole, checkpoints that eval reads, exact resume."""

from __future__ import annotations

import pytest
import safetensors.numpy  # noqa: F401
import safetensors.torch
import torch
from click.testing import CliRunner

from rlgen.cli.main import cli
from rlgen.dqn import DQNAgent, make_config
from rlgen.pqn.returns import q_lambda_returns
from rlgen.pqn.train import train, train_steps

GAMMA, LAM = 0.9, 0.5


def _rollout():
    """One copy, 6 steps: step 1 terminates, step 2 is its autoreset step, step 4 is truncated."""
    rewards = torch.tensor([[1.0], [2.0], [0.0], [3.0], [4.0], [5.0]])
    terms = torch.tensor([[False], [True], [False], [False], [False], [False]])
    truncs = torch.tensor([[False], [False], [False], [False], [True], [False]])
    next_max_q = torch.tensor([[10.0], [20.0], [30.0], [40.0], [50.0], [60.0]])  # max Q(s_{t+1})
    return rewards, terms, truncs, next_max_q


def test_q_lambda_returns_match_a_hand_computed_rollout():
    rewards, terms, truncs, next_max_q = _rollout()
    g = q_lambda_returns(rewards, terms, truncs, next_max_q, GAMMA, LAM)[:, 0]
    g5 = 5.0 + GAMMA * 60.0  # the rollout's last step bootstraps
    g4 = 4.0 + GAMMA * 50.0  # truncated: bootstraps from the final observation, no lambda continuation
    g3 = 3.0 + GAMMA * ((1 - LAM) * 40.0 + LAM * g4)
    g1 = 2.0  # terminated: no bootstrap
    g0 = 1.0 + GAMMA * ((1 - LAM) * 10.0 + LAM * g1)
    torch.testing.assert_close(g[[0, 1, 3, 4, 5]], torch.tensor([g0, g1, g3, g4, g5]))


def test_lambda_zero_is_one_step_targets_and_only_truncation_bootstraps():
    rewards, terms, truncs, next_max_q = _rollout()
    g = q_lambda_returns(rewards, terms, truncs, next_max_q, GAMMA, 0.0)
    torch.testing.assert_close(g, rewards + GAMMA * next_max_q * (~terms).float())
    # A truncation bootstraps where the same step as a termination would not.
    truncs_instead = q_lambda_returns(rewards, torch.zeros_like(terms), terms, next_max_q, GAMMA, LAM)
    assert truncs_instead[1, 0] == pytest.approx(2.0 + GAMMA * 20.0)


def test_lambda_one_is_the_discounted_return_to_the_rollout_end():
    rewards = torch.ones(4, 1)
    none = torch.zeros(4, 1, dtype=torch.bool)
    g = q_lambda_returns(rewards, none, none, torch.full((4, 1), 7.0), GAMMA, 1.0)
    assert g[0, 0] == pytest.approx(1 + GAMMA + GAMMA**2 + GAMMA**3 + GAMMA**4 * 7.0)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    config = make_config("CartPole-v1", algo="pqn", total_timesteps=30_000, eval_episodes=20, seed=0)
    return config, train(config, device="cpu", logdir=tmp_path_factory.mktemp("pqn"), progress=False)


def test_a_short_cartpole_run_clearly_beats_random(cartpole_run):
    config, result = cartpole_run
    random_score = 22.3  # envs/classic_control.yml
    assert result.step >= 30_000 and result.eval_mean > 4 * random_score


def test_its_checkpoint_works_with_eval_and_the_agent_api(cartpole_run, tmp_path):
    config, result = cartpole_run
    agent = DQNAgent.load(result.run_dir)
    raw = safetensors.torch.load_file(str(result.checkpoint))
    for key, value in agent.q_net.state_dict().items():
        assert torch.equal(value, raw[f"model/q_net/{key}"]), key
    again = DQNAgent.load(agent.save(tmp_path / "pqn.safetensors"))
    assert type(again.config).__name__ == "PQNConfig"
    out = CliRunner().invoke(cli, ["eval", str(result.run_dir), "--episodes", "20", "--seed", str(config.seed + 100_000)])
    assert out.exit_code == 0 and f"{result.eval_mean:.2f}" in out.stdout  # the final evaluation's episodes again


class StopAfter:
    def __init__(self, rollouts: int):
        self.rollouts, self.seen = rollouts, 0

    @property
    def requested(self) -> bool:
        self.seen += 1
        return self.seen > self.rollouts


@pytest.mark.parametrize("env_id, fields", [
    ("CartPole-v1", dict(total_timesteps=8192, num_envs=8, num_steps=64)),
    ("MinAtar/Breakout-v1", dict(total_timesteps=4096, num_envs=8, num_steps=32, num_minibatches=4,
                                 backbone={"kind": "small_cnn", "channels": [8], "features_dim": 32, "layer_norm": True})),
])
def test_interrupted_and_resumed_equals_uninterrupted_tensor_by_tensor(env_id, fields, tmp_path):
    config = make_config(env_id, algo="pqn", seed=5, eval_episodes=0, **fields)
    whole = train(config, device="cpu", logdir=tmp_path / "whole", progress=False)
    steps = train_steps(config, torch.device("cpu"), logdir=tmp_path / "parts", interrupt=StopAfter(7))
    while True:
        try:
            next(steps)
        except StopIteration as done:
            part = done.value
            break
    assert part.interrupted and 0 < part.step < config.total_timesteps
    resumed = train(config, device="cpu", resume=part.run_dir, progress=False)
    assert resumed.step == whole.step
    a = {k: v for k, v in safetensors.torch.load_file(str(whole.checkpoint)).items() if not k.startswith("rng/")}
    b = {k: v for k, v in safetensors.torch.load_file(str(resumed.checkpoint)).items() if not k.startswith("rng/")}
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("args, fragment", [
    (["train-pqn", "Pendulum-v1"], "Pendulum-v1 has a Box action space"),
    (["train-pqn", "CartPol-v1"], "unknown environment id 'CartPol-v1'"),
    (["train-pqn", "CartPole-v1", "--set", "backbone.kind=lstm"], "feed-forward Q-networks"),
    (["train-pqn", "CartPole-v1", "--set", "q_lambda=1.5"], "q_lambda=1.5"),
    (["train-pqn", "CartPole-v1", "--set", "num_minibatches=100000"], "num_minibatches=100000"),
])
def test_bad_input_is_one_clear_line(args, fragment, tmp_path):
    result = CliRunner().invoke(cli, [*args, "--logdir", str(tmp_path), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 2 and fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_rlgen_raises_its_own_error_types_for_users():
    """A bare ValueError from rlgen code would bypass the one-line messages (and be reported as a bug)."""
    from pathlib import Path

    import rlgen

    offenders = [str(p) for p in Path(rlgen.__file__).parent.rglob("*.py") if "raise ValueError(" in p.read_text()]
    assert offenders == []
