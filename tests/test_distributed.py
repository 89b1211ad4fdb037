"""Data-parallel generative training under torchrun: 2 CPU ranks (gloo) against one process.

Every test starts the real command, ``torchrun --standalone --nproc-per-node 2 -m rlgen train ...``,
and compares the checkpoint rank 0 wrote with one process trained on the same (global) batch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_generative_resume import _tensors

from rlgen.generative.configs import make_config, model_parts
from rlgen.generative.runs import CHECKPOINT_NAME
from rlgen.training import load_checkpoint

# Small enough for seconds per run; the MLP generator, because torch has no SyncBatchNorm on CPU
# (batch norm would normalise each rank's half; on GPUs it becomes SyncBatchNorm).
QUIET = ["eval_samples=0", "sample_interval=0", "checkpoint_interval=0", "log_interval=2"]
MODELS = {
    "vae": ["latent_dim=4", "decoder=mlp", "decoder_hidden_sizes=[32]", "eval_images=50", "nll_samples=2",
            "encoder.channels=[8]", "encoder.features_dim=32"],
    "gan": ["architecture=mlp", "latent_dim=8", "generator_hidden_sizes=[32]", "critic_hidden_sizes=[32]",
            "n_critic=2"],
    "diffusion": ["unet_channels=[8,16]", "unet_attention=[false,false]", "norm_num_groups=4", "warmup_steps=2",
                  "sample_steps=2"],
}
STEPS, BATCH = 6, 32


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "rlgen"]


def torchrun(model: str, logdir: Path, steps: int = STEPS) -> list[str]:
    sets = [f"--set={item}" for item in QUIET + MODELS[model]]
    return [*TORCHRUN, "train", model, "--data", "digits", "--steps", str(steps), "--batch-size", str(BATCH),
            "--logdir", str(logdir), "--device", "cpu", "--quiet", *sets]


def one_process(model: str, logdir: Path, steps: int = STEPS, resume: Path | None = None):
    """The same run in this process (the reference)."""
    _, train = model_parts(model)
    config = make_config(model, "digits", None, None, QUIET + MODELS[model], steps=steps, batch_size=BATCH)
    with torch.random.fork_rng():
        return train(config, logdir=logdir, device="cpu", resume=resume, progress=False)


def assert_same_training(a: Path, b: Path) -> None:
    wa, wb = _tensors(a), _tensors(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        if wa[name].is_floating_point():
            # Only the order of float sums differs (DDP averages two half-batch gradients).
            torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5, msg=name)
        else:
            assert torch.equal(wa[name], wb[name]), name


def only_run(logdir: Path) -> Path:
    runs = [p for p in logdir.iterdir() if p.is_dir() and p.name != "tune"]
    assert len(runs) == 1, runs  # rank 1 made no directory of its own
    return runs[0]


@pytest.mark.parametrize("model", ["vae", "gan", "diffusion"])
def test_two_ranks_train_the_weights_one_process_trains_on_the_combined_batch(model, tmp_path):
    done = subprocess.run(torchrun(model, tmp_path / "ddp"), env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run: ") == 1  # rank 0 reports, rank 1 is quiet
    ddp_run = only_run(tmp_path / "ddp")
    reference = one_process(model, tmp_path / "single")
    assert load_checkpoint(ddp_run / CHECKPOINT_NAME).meta["step"] == STEPS
    assert_same_training(ddp_run / CHECKPOINT_NAME, reference.checkpoint)
    # Weights did move: the comparison is not between two untrained nets.
    first = one_process(model, tmp_path / "one-step", steps=1)
    moved = [k for k, v in _tensors(first.checkpoint).items() if v.is_floating_point()
             and not torch.allclose(v, _tensors(reference.checkpoint)[k])]
    assert moved


def rank_pids(launcher: subprocess.Popen) -> dict[int, int]:
    """RANK -> pid of the worker processes torchrun started."""
    found: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = int(next(line for line in status.read_text().splitlines() if line.startswith("PPid:")).split()[1])
            if ppid != launcher.pid:
                continue
            environ = (status.parent / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration):
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(status.parent.name)
    return found


def stopped_job(logdir: Path, stop) -> tuple[str, str]:
    """Start a long 2-rank GAN run, call ``stop(launcher)`` inside its step loop, return (stdout, stderr)."""
    # A session of its own, as a terminal's job is: Ctrl-C reaches the whole process group.
    launcher = subprocess.Popen(torchrun("gan", logdir, steps=100_000), env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (logdir.is_dir() and any(logdir.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # well inside the step loop
        stop(launcher)
        return launcher.communicate(timeout=120)
    finally:
        launcher.kill()


def stopped_at(out: str, err: str, run_dir: Path) -> int:
    """The step both ranks say they stopped at, checked against the one checkpoint rank 0 wrote."""
    stopped = [line for line in err.splitlines() if "rank 1 of 2 stopped at step" in line]
    assert len(stopped) == 1, err[-3000:]
    step = int(stopped[0].split("stopped at step ")[1].split()[0].replace(",", ""))
    assert f"interrupted at step {step:,}" in out  # rank 0 stopped at the same step
    assert load_checkpoint(run_dir / CHECKPOINT_NAME).meta["step"] == step
    assert len(list((run_dir / "checkpoints").glob("step-*.safetensors"))) == 1  # one checkpoint, from rank 0
    return step


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc and process groups")
def test_ctrl_c_on_the_job_saves_one_checkpoint_at_the_step_every_rank_stopped_at(tmp_path):
    out, err = stopped_job(tmp_path / "ddp", lambda launcher: os.killpg(launcher.pid, signal.SIGINT))
    stopped_at(out, err, only_run(tmp_path / "ddp"))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_a_stop_on_one_rank_stops_both_at_one_step_and_the_run_resumes_there(tmp_path):
    logdir = tmp_path / "ddp"

    def sigterm_rank_1(launcher: subprocess.Popen) -> None:
        pids = rank_pids(launcher)
        assert set(pids) == {0, 1}
        os.kill(pids[1], signal.SIGTERM)  # only rank 1 hears it

    out, err = stopped_job(logdir, sigterm_rank_1)
    run_dir = only_run(logdir)
    step = stopped_at(out, err, run_dir)

    # Both ranks resume from it; 4 more steps equal one process resuming from the same checkpoint.
    reference_dir = tmp_path / "single" / run_dir.name
    reference_dir.parent.mkdir()
    subprocess.run(["cp", "-a", str(run_dir), str(reference_dir)], check=True)
    resume = [*TORCHRUN, "train", "gan", "--resume", str(run_dir), "--steps", str(step + 4), "--device", "cpu", "--quiet"]
    done = subprocess.run(resume, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-8000:]
    reference = one_process("gan", tmp_path / "unused", steps=step + 4, resume=reference_dir)
    assert load_checkpoint(run_dir / CHECKPOINT_NAME).meta["step"] == step + 4
    assert_same_training(run_dir / CHECKPOINT_NAME, reference.checkpoint)


def test_a_global_batch_the_ranks_cannot_split_is_one_line_before_anything_is_written(tmp_path):
    command = torchrun("vae", tmp_path / "ddp")
    command[command.index("--batch-size") + 1] = "33"
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    # Each rank says it in one line; what follows is torchrun's own report that its workers failed.
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == ["Error: batch_size=33 does not split over 2 ranks; batch_size is the global batch, "
                      "so pass a multiple of 2"] * 2
    assert not [line for line in done.stderr.splitlines() if line.strip().startswith("File ") and "/rlgen/" in line]
    assert not (tmp_path / "ddp").exists()


@pytest.mark.parametrize("args", [["train-dqn", "CartPole-v1"], ["train-pqn", "CartPole-v1"], ["tune", "dqn", "CartPole-v1"]])
def test_commands_that_do_not_train_data_parallel_refuse_torchrun(args, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from rlgen.cli.main import cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "does not run data-parallel" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_rank_randomness_draws_from_seed_plus_rank_and_leaves_the_shared_stream_alone(monkeypatch):
    from rlgen.training import DataParallel

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    parallel = DataParallel("cpu")
    torch.manual_seed(0)
    with parallel.rank_randomness(123):  # one process: the block draws from the shared stream itself
        alone = torch.rand(4)
    assert torch.equal(alone, torch.rand(4, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    torch.rand(4)
    expected_next = torch.rand(4)
    for rank in (0, 1):
        parallel.enabled, parallel.rank = True, rank  # as rank R of a 2-rank job (no collective is involved)
        torch.manual_seed(0)
        torch.rand(4)
        with parallel.rank_randomness(123):
            inside = torch.rand(4)
        assert torch.equal(inside, torch.rand(4, generator=torch.Generator().manual_seed(123 + rank)))
        assert torch.equal(torch.rand(4), expected_next)  # the shared stream goes on as if nothing was drawn
