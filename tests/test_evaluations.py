"""Evaluations during training played by a worker process on another core give what inline ones give."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import tempfile

import pytest
import safetensors.torch
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlgen.dqn import evaluations, make_config
from rlgen.dqn.seeds import train_seeds
from rlgen.dqn.train import train
from rlgen.pqn.train import train as pqn_train
from rlgen.training import load_checkpoint

pytestmark = pytest.mark.skipif(evaluations.free_cores() < 2, reason="background evaluations need a second core")


def _config(**fields):
    # keep_best by evaluations with a checkpoint between them: the snapshot kept and saved comes from the
    # evaluations, so any score taken late, out of order or from the wrong weights changes a tensor.
    return make_config("CartPole-v1", total_timesteps=3000, overrides=[
        "eval_freq=400", "eval_during_episodes=4", "keep_best=true", "keep_best_by=eval", "checkpoint_freq=1600",
        "eval_episodes=5", "learning_starts=500", "keep_checkpoints=5"], **fields)


def _count_background(monkeypatch) -> list[int]:
    submitted: list[int] = []
    submit = evaluations.BackgroundEvaluations.submit

    def counted(self, run, global_step):
        submitted.append(global_step)
        return submit(self, run, global_step)

    monkeypatch.setattr(evaluations.BackgroundEvaluations, "submit", counted)
    return submitted


def _checkpoints(run_dir):
    files = sorted((run_dir / "checkpoints").glob("*.safetensors")) + [run_dir / "checkpoint.safetensors"]
    return [(safetensors.torch.load_file(str(f)), load_checkpoint(f).meta) for f in files]


def _eval_scalars(run_dir):
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars("eval/episodic_return")]


def _assert_same_runs(a_dir, b_dir):
    a, b = _checkpoints(a_dir), _checkpoints(b_dir)
    assert len(a) == len(b) >= 2
    for (ta, ma), (tb, mb) in zip(a, b):
        assert set(ta) == set(tb)
        for key in ta:
            assert torch.equal(ta[key], tb[key]), key
        assert ma["best"] == mb["best"] and ma["step"] == mb["step"]
    assert any(key.startswith("extra/best.") for key in a[0][0])  # the mid-run checkpoint holds a kept snapshot
    assert _eval_scalars(a_dir) == _eval_scalars(b_dir)


def test_background_evaluations_equal_inline_ones(tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the worker's weight files go
    submitted = _count_background(monkeypatch)
    background = train(_config(seed=3), device="cpu", logdir=tmp_path / "background", progress=False)
    assert submitted == list(range(400, 3001, 400))  # every evaluation went to the worker
    inline = train(_config(seed=3, eval_in_background=False), device="cpu", logdir=tmp_path / "inline",
                   progress=False)
    assert len(submitted) == 7
    _assert_same_runs(background.run_dir, inline.run_dir)
    assert background.metrics == inline.metrics
    assert not list((tmp_path / "tmp").glob("rlgen-eval-*"))  # the weight files and their folder are gone


def test_a_group_shares_one_worker_and_keeps_what_inline_keeps(tmp_path, monkeypatch):
    starts = []
    start = evaluations.BackgroundEvaluations._start
    monkeypatch.setattr(evaluations.BackgroundEvaluations, "_start",
                        lambda self: (starts.append(1), start(self)))
    configs = [_config(seed=s) for s in (0, 1)]
    background = train_seeds(configs, device="cpu", logdir=tmp_path / "background", progress=False)
    assert len(starts) == 1
    inline = train_seeds([dataclasses.replace(c, eval_in_background=False) for c in configs], device="cpu",
                         logdir=tmp_path / "inline", progress=False)
    for a, b in zip(background.runs, inline.runs):
        _assert_same_runs(a.run_dir, b.run_dir)
    assert background.summary.returns == inline.summary.returns


def test_pqn_evaluates_in_the_background_too(tmp_path, monkeypatch):
    submitted = _count_background(monkeypatch)
    config = make_config("CartPole-v1", algo="pqn", total_timesteps=4096, overrides=["eval_freq=1024", "eval_during_episodes=3",
                                                                        "eval_episodes=3"])
    background = pqn_train(config, device="cpu", logdir=tmp_path / "background", progress=False)
    inline = pqn_train(dataclasses.replace(config, eval_in_background=False), device="cpu",
                       logdir=tmp_path / "inline", progress=False)
    assert len(submitted) == 4
    assert _eval_scalars(background.run_dir) == _eval_scalars(inline.run_dir)


def test_a_dead_worker_falls_back_to_inline_evaluations(tmp_path, monkeypatch, caplog):
    def dying_worker(self):  # a worker that dies before answering (killed, or a bug in it)
        self._dir = str(tmp_path / "worker")
        (tmp_path / "worker").mkdir()
        self._proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit(3)"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    monkeypatch.setattr(evaluations.BackgroundEvaluations, "_start", dying_worker)
    submitted = _count_background(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="rlgen.dqn.evaluations"):
        fallen = train(_config(seed=5), device="cpu", logdir=tmp_path / "fallen", progress=False)
    assert len(submitted) == 7 and "exited with code 3" in caplog.text
    inline = train(_config(seed=5, eval_in_background=False), device="cpu", logdir=tmp_path / "inline",
                   progress=False)
    _assert_same_runs(fallen.run_dir, inline.run_dir)


def test_hooks_gpu_and_threads_keep_evaluations_inline():
    config, cpu = _config(), torch.device("cpu")
    assert isinstance(evaluations.make_evaluations(config, cpu, None), evaluations.BackgroundEvaluations)
    assert isinstance(evaluations.make_evaluations(config, cpu, lambda step, means: False),
                      evaluations.InlineEvaluations)  # a pruner needs each score before the loop goes on
    assert isinstance(evaluations.make_evaluations(config, torch.device("meta"), None), evaluations.InlineEvaluations)
    assert isinstance(evaluations.make_evaluations(dataclasses.replace(config, eval_freq=0, keep_best=False), cpu, None),
                      evaluations.InlineEvaluations)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert isinstance(evaluations.make_evaluations(config, cpu, None), evaluations.InlineEvaluations)
    finally:
        torch.set_num_threads(before)
