"""The DQN command line: train-dqn, eval and enjoy from a saved run, presets, and one-line user errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rlgen.cli.main import cli
from rlgen.dqn import DQNAgent
from rlgen.training import load_checkpoint


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A short CartPole run trained through the CLI."""
    logdir = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(cli, [
        "train-dqn", "CartPole-v1", "--total-steps", "1200", "--num-envs", "2", "--seed", "3",
        "--device", "cpu", "--logdir", str(logdir), "--quiet", "--set", "eval_episodes=0",
        "--set", "backbone.hidden_sizes=[32]",
    ])
    assert result.exit_code == 0, result.output
    match = re.search(r"^run: (.+)$", result.stdout, re.MULTILINE)
    path = Path(match.group(1))
    assert (path / "checkpoint.safetensors").is_file()
    assert "trained 1,200 steps" in result.stdout
    return path


def test_train_dqn_cli_applies_options_and_overrides(run_dir):
    meta = load_checkpoint(run_dir / "checkpoint.safetensors").meta
    config = meta["config"]
    assert meta["step"] == 1200
    assert (config["env_id"], config["num_envs"], config["seed"], config["total_timesteps"]) == ("CartPole-v1", 2, 3, 1200)
    assert config["backbone"]["hidden_sizes"] == [32]
    from rlgen.presets import get_preset

    assert config["learning_rate"] == get_preset("dqn", "CartPole-v1")["learning_rate"]  # the rest: the preset's


def test_eval_prints_the_mean_return_of_the_saved_agent(run_dir):
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--episodes", "5", "--seed", "7"])
    assert result.exit_code == 0, result.output
    match = re.fullmatch(r"CartPole-v1: mean return ([\d.]+) \+/- ([\d.]+) over 5 episodes\n", result.stdout)
    assert match, result.stdout
    mean, std = DQNAgent.load(run_dir).evaluate(episodes=5, seed=7)  # greedy evaluation is deterministic
    assert (float(match.group(1)), float(match.group(2))) == (round(mean, 2), round(std, 2))
    # A checkpoint file works as well as its run directory.
    again = CliRunner().invoke(cli, ["eval", str(run_dir / "checkpoint.safetensors"), "--episodes", "5", "--seed", "7"])
    assert again.stdout == result.stdout


def test_enjoy_records_a_gif_of_the_episodes(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    out = tmp_path / "clips" / "out.gif"
    result = CliRunner().invoke(cli, ["enjoy", str(run_dir), "--video", str(out), "--episodes", "2", "--fps", "10"])
    assert result.exit_code == 0, result.output
    returns = [float(r) for r in result.stdout.split("returns:")[1].split(",")]
    assert len(returns) == 2 and all(r >= 8 for r in returns)
    with Image.open(out) as gif:
        # CartPole pays 1 per step; each episode is its reset frame plus one frame per step.
        # GIF writers merge identical consecutive frames, adding up their durations.
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
        assert sum(durations) == 100 * (sum(returns) + 2)
        gif.seek(0)
        assert gif.size == (600, 400)
        colours = np.unique(np.asarray(gif.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 2  # a real picture, not a blank frame


def test_enjoy_rejects_an_unknown_video_format(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    result = CliRunner().invoke(cli, ["enjoy", str(run_dir), "--video", str(tmp_path / "out.avi")])
    _assert_one_line_error(result, "use a .mp4 or .gif")


def test_train_dqn_resume_continues_the_run(run_dir, tmp_path):
    import shutil

    copy = shutil.copytree(run_dir, tmp_path / run_dir.name)
    result = CliRunner().invoke(cli, ["train-dqn", "CartPole-v1", "--resume", str(copy), "--total-steps", "1400",
                                      "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"run: {copy}" in result.stdout
    assert load_checkpoint(copy / "checkpoint.safetensors").meta["step"] == 1400


def test_presets_lists_the_dqn_presets():
    result = CliRunner().invoke(cli, ["presets", "dqn"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "dqn:"
    names = [line.split()[0] for line in lines[1:]]
    assert "CartPole-v1" in names and "CartPole-v1-rlzoo" in names
    assert any("CartPole-v1-rlzoo" in line and "CartPole-v1" in line.split()[1:] for line in lines)
    everything = CliRunner().invoke(cli, ["presets"])
    assert "dqn:" in everything.stdout.splitlines()


# ----------------------------------------------------------------------------- user errors


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args, fragments", [
    (["train-dqn", "CartPol-v1"], ["unknown environment id 'CartPol-v1'", "Did you mean CartPole-v1"]),
    (["train-dqn", "Pendulum-v1"], ["Pendulum-v1 has a Box action space", "discrete actions"]),
    (["train-dqn", "CartPole-v1", "--set", "learnin_rate=1e-3"], ["unknown DQNConfig field 'learnin_rate'"]),
    (["train-dqn", "CartPole-v1", "--set", "batch_size=abc"], ["batch_size='abc' is not an int"]),
    (["train-dqn", "CartPole-v1", "--set", "backbone.kind=resnet"], ["backbone.kind='resnet' is not allowed"]),
    (["train-dqn", "CartPole-v1", "--set", "gamma=1.5"], ["gamma=1.5"]),
    (["train-dqn", "CartPole-v1", "--preset", "CartPole-v9"], ["unknown dqn preset 'CartPole-v9'", "CartPole-v1"]),
    (["train-dqn", "Acrobot-v1", "--preset", "CartPole-v1-rlzoo"],
     ["preset 'CartPole-v1-rlzoo' is for CartPole-v1, not Acrobot-v1"]),
])
def test_train_dqn_user_errors(tmp_path, args, fragments):
    # A small budget, so that a check that stops working fails fast instead of training for minutes.
    result = CliRunner().invoke(cli, [*args, "--logdir", str(tmp_path), "--device", "cpu", "--quiet",
                                      "--total-steps", "200", "--set", "eval_episodes=0"])
    _assert_one_line_error(result, *fragments)
    assert not any(tmp_path.iterdir())  # no half-made run directory is left behind


def test_eval_and_enjoy_missing_or_corrupt_checkpoint(tmp_path):
    missing = tmp_path / "no_such_run"
    for command in ("eval", "enjoy"):
        _assert_one_line_error(CliRunner().invoke(cli, [command, str(missing)]), "no checkpoint at")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _assert_one_line_error(CliRunner().invoke(cli, ["eval", str(corrupt)]), str(corrupt))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(b"\x01\x02")
    _assert_one_line_error(CliRunner().invoke(cli, ["eval", str(truncated)]), "truncated")
