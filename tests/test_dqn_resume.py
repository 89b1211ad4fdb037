"""Exact resume and explicit run state: an interrupted and resumed run equals an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from rlgen.dqn import make_config
from rlgen.dqn.train import train, train_steps


class StopAfter:
    """Stands in for GracefulInterrupt: 'Ctrl-C' arrives after ``steps`` vector steps."""

    def __init__(self, steps: int):
        self.steps, self.seen = steps, 0

    @property
    def requested(self) -> bool:
        self.seen += 1
        return self.seen > self.steps


def _drain(steps):
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _tensors(path):
    """Every stored tensor but torch's process-global RNG (the run's own streams are compared)."""
    return {k: v for k, v in safetensors.torch.load_file(str(path)).items() if not k.startswith("rng/")}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _replay(run_dir):
    (path,) = run_dir.glob("replay-*.safetensors")
    return {k: torch.from_numpy(v) for k, v in safetensors.numpy.load_file(str(path)).items()}


CASES = {
    # feed-forward, CartPole's one-array vector env, dueling double 3-step DQN (the preset) with keep_best
    "cartpole": ("CartPole-v1", dict(total_timesteps=4000, learning_starts=500, eval_episodes=0)),
    # feed-forward on a MinAtar CNN: SyncVectorEnv copies replayed, MinAtar's RandomState and sticky action
    "minatar-per": ("MinAtar/Breakout-v1", dict(total_timesteps=1500, learning_starts=300, num_envs=2,
                                                prioritized=True, buffer_size=5000, train_freq=4,
                                                backbone={"kind": "small_cnn", "channels": [4], "features_dim": 16},
                                                eval_episodes=0)),
    # recurrent: LSTM with stored state, prioritized sequence replay, actor memory
    "lstm": ("rlgen/CartPoleNoVel-v0", dict(total_timesteps=1500, num_envs=2, prioritized=True, eval_episodes=0,
                                           learning_starts=400, buffer_size=4000)),
    # transformer: context windows in the actor's memory, dropout drawing from the run's torch stream
    "transformer": ("rlgen/TMaze-L5-v0", dict(total_timesteps=1200, num_envs=2, eval_episodes=0, learning_starts=300,
                                             buffer_size=3000, sequence_length=4, context_length=4,
                                             backbone={"kind": "transformer", "d_model": 16, "n_layers": 1, "dropout": 0.1,
                                                       "n_heads": 2})),
    # tcn: the same windows through causal dilated convolutions
    "tcn": ("rlgen/TMaze-L5-v0", dict(total_timesteps=1200, num_envs=2, eval_episodes=0, learning_starts=300,
                                     buffer_size=3000, sequence_length=4, context_length=4,
                                     backbone={"kind": "tcn", "tcn_channels": [8, 8], "hidden_sizes": [8]})),
}


@pytest.mark.parametrize("case", list(CASES))
def test_interrupted_and_resumed_equals_uninterrupted_tensor_by_tensor(case, tmp_path):
    env_id, fields = CASES[case]
    config = make_config(env_id, seed=3, **fields)
    whole = train(config, device="cpu", logdir=tmp_path / "whole", progress=False)

    vector_steps = config.total_timesteps // config.num_envs
    part = _drain(train_steps(config, torch.device("cpu"), logdir=tmp_path / "parts",
                              interrupt=StopAfter(vector_steps // 2)))
    assert part.interrupted and part.step < config.total_timesteps
    resumed = train(config, device="cpu", resume=part.run_dir, progress=False)
    assert resumed.run_dir == part.run_dir and not resumed.interrupted
    assert resumed.step == whole.step

    _assert_same(_tensors(whole.checkpoint), _tensors(resumed.checkpoint))
    _assert_same(_replay(whole.run_dir), _replay(resumed.run_dir))


def test_two_runs_stepped_alternately_give_what_each_gives_alone(tmp_path):
    """Every generator a run uses is its own: interleaving two runs in one process changes nothing."""
    configs = [make_config("rlgen/CartPoleNoVel-v0", seed=s, **CASES["lstm"][1]) for s in (0, 1)]
    alone = [train(c, device="cpu", logdir=tmp_path / f"alone{i}", progress=False) for i, c in enumerate(configs)]

    runs = [train_steps(c, torch.device("cpu"), logdir=tmp_path / f"mixed{i}") for i, c in enumerate(configs)]
    results = [None, None]
    while any(r is None for r in results):
        for i, steps in enumerate(runs):
            if results[i] is None:
                try:
                    next(steps)
                    torch.rand(3), np.random.rand()  # the process's own draws between steps touch no run
                except StopIteration as done:
                    results[i] = done.value
    for a, b in zip(alone, results):
        _assert_same(_tensors(a.checkpoint), _tensors(b.checkpoint))


def test_a_replay_from_another_save_is_never_paired_with_a_checkpoint(tmp_path):
    config = make_config("CartPole-v1", seed=0, **CASES["cartpole"][1])
    part = _drain(train_steps(config, torch.device("cpu"), logdir=tmp_path, interrupt=StopAfter(100)))
    (replay,) = part.run_dir.glob("replay-*.safetensors")
    # A crash between writing a newer replay and its checkpoint: a replay file the checkpoint does not name.
    stray = replay.with_name("replay-000000099999-aaaaaaaaaaaa.safetensors")
    stray.write_bytes(replay.read_bytes())
    replay.unlink()
    resumed = train(config, device="cpu", resume=part.run_dir, progress=False)
    assert resumed.step >= config.total_timesteps  # resumed with an empty replay, said so, and finished
    assert not stray.exists()  # the stray file was pruned by the next save, never loaded


def test_resume_from_a_checkpoint_in_another_runs_folder_writes_only_into_a_new_run(tmp_path):
    config = make_config("CartPole-v1", seed=0, **CASES["cartpole"][1])
    mine = _drain(train_steps(config, torch.device("cpu"), logdir=tmp_path / "a", interrupt=StopAfter(50)))
    other = train(config, device="cpu", logdir=tmp_path / "b", progress=False)
    stray = other.run_dir / "from-elsewhere.safetensors"
    stray.write_bytes((mine.run_dir / "checkpoint.safetensors").read_bytes())
    before = {p: p.read_bytes() for p in other.run_dir.rglob("*") if p.is_file()}

    resumed = train(config, device="cpu", resume=stray, logdir=tmp_path / "new", progress=False)
    assert resumed.run_dir.parent == tmp_path / "new" and resumed.step >= config.total_timesteps
    after = {p: p.read_bytes() for p in other.run_dir.rglob("*") if p.is_file()}
    assert after == before  # the other run's checkpoint, replay and logs are untouched


def test_a_family_that_cannot_be_restored_says_so_and_still_resumes(tmp_path, monkeypatch, caplog):
    import rlgen.envs.resumable as resumable

    config = make_config("CartPole-v1", seed=0, **CASES["cartpole"][1])
    part = _drain(train_steps(config, torch.device("cpu"), logdir=tmp_path, interrupt=StopAfter(50)))
    monkeypatch.setattr(resumable, "EXACT_FAMILIES", ("minatar",))  # as for Atari: no exact restore
    with caplog.at_level("WARNING"):
        resumed = train(config, device="cpu", resume=part.run_dir, progress=False)
    assert "cannot be saved exactly" in caplog.text and "not exact" in caplog.text
    assert resumed.step >= config.total_timesteps


def test_kill_9_never_leaves_a_checkpoint_paired_with_another_moments_replay(tmp_path):
    """SIGKILL at random moments of a run that saves often: what is on disk always resumes consistently."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from rlgen.dqn.resume import ResumePoint
    from rlgen.dqn.replay_io import replay_token
    from rlgen.training import load_checkpoint

    rng = np.random.default_rng(0)
    for attempt in range(6):
        logdir = tmp_path / f"try{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlgen.cli.main", "train-dqn", "CartPole-v1", "--total-steps", "5000000",
             "--logdir", str(logdir), "--device", "cpu", "--quiet", "--set", "checkpoint_freq=320",
             "--set", "keep_checkpoints=2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.time() + 120
        while not list(logdir.glob("*/checkpoint.safetensors")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.0, 1.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (run,) = logdir.iterdir()
        ckpt = load_checkpoint(run / "checkpoint.safetensors")
        named = run / ckpt.meta["replay"]["file"]
        assert named.is_file() and replay_token(named) == ckpt.meta["replay"]["token"]
        config = make_config("CartPole-v1", overrides=["checkpoint_freq=320", "keep_checkpoints=2"],
                             total_timesteps=5_000_000)
        point = ResumePoint.find(run, config, logdir)
        assert point.replay == named
