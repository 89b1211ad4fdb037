"""``rlgen train`` / ``rlgen sample`` for the generative models, end to end on the embedded digits."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rlgen.cli.main import cli
from rlgen.generative.runs import CHECKPOINT_NAME
from rlgen.training import load_checkpoint

# Tiny nets and few steps: these tests check the commands, not the models.
TINY = {
    "vae": ["--set", "encoder.channels=[8]", "--set", "encoder.features_dim=16", "--set", "decoder_channels=[8, 8]",
            "--set", "latent_dim=4", "--set", "nll_samples=2", "--set", "eval_images=50"],
    "gan": ["--set", "generator_channels=[8, 8]", "--set", "critic_channels=[8, 8]", "--set", "latent_dim=4",
            "--set", "n_critic=2"],
    "diffusion": ["--set", "unet_channels=[8, 16]", "--set", "unet_attention=[false, false]",
                  "--set", "layers_per_block=1", "--set", "norm_num_groups=4", "--set", "warmup_steps=1",
                  "--set", "sample_steps=2"],
}  # fmt: skip
COMMON = ["--steps", "4", "--batch-size", "16", "--device", "cpu", "--quiet", "--set", "eval_samples=0",
          "--set", "log_interval=2", "--set", "sample_interval=0", "--set", "checkpoint_interval=0"]  # fmt: skip


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def train(model: str, logdir, *extra: str):
    result = invoke("train", model, "--data", "digits", "--logdir", str(logdir), *COMMON, *TINY[model], *extra)
    assert result.exit_code == 0, result.output
    return result


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """A runs folder holding one tiny run of each model, trained through the CLI."""
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("runs")
    for model in TINY:
        train(model, path)
    return path


@pytest.mark.parametrize("model", ["vae", "gan", "diffusion"])
def test_train_then_sample_the_latest_run_writes_a_png(logdir, tmp_path, model):
    (run,) = [p for p in logdir.iterdir() if p.name.startswith(f"digits__{model}__0__")]
    assert (run / CHECKPOINT_NAME).is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["steps"] == 4 and config["batch_size"] == 16 and config["data"] == "digits"
    out = tmp_path / "grid.png"
    extra = ["--scheduler", "ddim", "--steps", "3"] if model == "diffusion" else []
    result = invoke("sample", model, "--logdir", str(logdir), "-n", "16", "--out", str(out), "--device", "cpu", *extra)
    assert result.exit_code == 0, result.output
    assert str(run) in result.output
    # 16 images of 8x8 in a 4x4 grid with 2 px padding.
    assert Image.open(out).size == (4 * 10 + 2, 4 * 10 + 2)


def test_gan_interpolation_grid_has_rows_of_eight(logdir, tmp_path):
    out = tmp_path / "walk.png"
    result = invoke("sample", "gan", "--logdir", str(logdir), "-n", "16", "--interpolate", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (8 * 10 + 2, 2 * 10 + 2)


def test_resume_continues_the_same_run(logdir):
    (run,) = [p for p in logdir.iterdir() if p.name.startswith("digits__vae__")]
    result = invoke("train", "vae", "--resume", str(run), "--steps", "6", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / CHECKPOINT_NAME).meta["step"] == 6
    # The checkpoint file names its run as well.
    result = invoke(
        "train", "vae", "--resume", str(run / CHECKPOINT_NAME), "--steps", "8", "--quiet", "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / CHECKPOINT_NAME).meta["step"] == 8 and len(list(logdir.glob("digits__vae__*"))) == 1
    assert_one_line_error(
        invoke("train", "vae", "--resume", str(run), "--set", "beta=2"), "--set cannot be given with it"
    )


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path, monkeypatch):
    import rlgen.generative.plumbing as plumbing

    class PressedAtOnce(plumbing.GracefulInterrupt):
        def __enter__(self):
            super().__enter__()
            self.requested = True
            return self

    monkeypatch.setattr(plumbing, "GracefulInterrupt", PressedAtOnce)
    result = invoke("train", "gan", "--data", "digits", "--logdir", str(tmp_path), *COMMON, *TINY["gan"])
    assert result.exit_code == 130
    assert "interrupted at step 1; resume with: rlgen train gan --resume" in result.output
    (run,) = tmp_path.iterdir()
    assert load_checkpoint(run / CHECKPOINT_NAME).meta["step"] == 1


def test_unknown_model_and_dataset_are_one_line_errors(tmp_path):
    assert_one_line_error(invoke("train", "vea"), "unknown model 'vea'", "vae, gan, diffusion")
    assert_one_line_error(invoke("sample", "flow"), "unknown model 'flow'")
    result = invoke("train", "vae", "--data", "fashion-mnst", "--logdir", str(tmp_path), "--quiet")
    assert_one_line_error(result, "fashion-mnst")


def test_missing_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HOME", str(tmp_path))
    result = invoke("train", "gan", "--data", "cifar10", "--data-dir", str(tmp_path), "--logdir", str(tmp_path))
    assert_one_line_error(result, "cifar10")
    assert not any(tmp_path.glob("cifar10__gan__*")), "no run directory for a run that never started"


def test_no_run_to_sample_shows_the_command_that_trains_one(tmp_path):
    assert_one_line_error(
        invoke("sample", "diffusion", "--logdir", str(tmp_path)), "rlgen train diffusion --data digits"
    )
    assert_one_line_error(invoke("sample", "vae", "--run", str(tmp_path / "gone")), "does not exist")


def test_corrupt_and_mismatched_checkpoints_are_one_line_errors(logdir, tmp_path):
    (run,) = [p for p in logdir.iterdir() if p.name.startswith("digits__gan__")]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / CHECKPOINT_NAME).write_bytes((run / CHECKPOINT_NAME).read_bytes()[:200])
    assert_one_line_error(invoke("sample", "gan", "--run", str(broken)), "truncated")
    assert_one_line_error(invoke("sample", "vae", "--run", str(run)), "is a 'gan' checkpoint", "rlgen sample gan")


def test_options_that_do_not_apply_are_one_line_errors(logdir):
    (diffusion,) = [p for p in logdir.iterdir() if p.name.startswith("digits__diffusion__")]
    assert_one_line_error(invoke("sample", "diffusion", "--run", str(diffusion), "--class", "3"), "class_conditional")
    assert_one_line_error(invoke("sample", "diffusion", "--run", str(diffusion), "--interpolate"), "vae and gan")
    assert_one_line_error(
        invoke("sample", "diffusion", "--run", str(diffusion), "--scheduler", "euler"), "unknown scheduler 'euler'"
    )
    assert_one_line_error(invoke("sample", "gan", "--logdir", str(logdir), "--scheduler", "ddim"), "diffusion")
    assert_one_line_error(invoke("train", "gan", "--set", "n_critic=0"), "n_critic=0 must be at least 1")


def test_class_conditional_diffusion_samples_a_requested_class(tmp_path):
    train("diffusion", tmp_path, "--set", "class_conditional=true")
    (run,) = tmp_path.iterdir()
    assert not (run / "model_index.json").exists()  # diffusers' pipelines cannot pass labels
    out = tmp_path / "sevens.png"
    result = invoke("sample", "diffusion", "--logdir", str(tmp_path), "-n", "4", "--class", "7", "--guidance", "3",
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (2 * 10 + 2, 2 * 10 + 2)
    assert_one_line_error(invoke("sample", "diffusion", "--run", str(run), "--class", "10"), "out of range", "9=9")


def test_evaluate_scores_the_samples_against_the_runs_dataset(logdir, monkeypatch):
    import rlgen.generative.evaluation as evaluation

    seen = {}

    def fake_evaluate_samples(samples01, dataset_name, *, labels=None, data_dir=None, device="cpu",
                              inception_weights=None):  # fmt: skip
        seen.update(shape=tuple(samples01.shape), low=float(samples01.min()), high=float(samples01.max()))
        seen.update(dataset=dataset_name, labels=labels, data_dir=data_dir, inception_weights=inception_weights)
        result = {"fid": 12.5, "fid_floor": 1.5, "kid": 3.0, "kid_floor": 0.1, "num_samples": 10.0}
        return result | ({"inception_fid": 42.0} if inception_weights else {})

    monkeypatch.setattr(evaluation, "evaluate_samples", fake_evaluate_samples)
    result = invoke("sample", "vae", "--logdir", str(logdir), "-n", "10", "--evaluate", "--data-dir", "/data",
                    "--out", str(logdir / "eval.png"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen["shape"] == (10, 1, 8, 8) and 0 <= seen["low"] and seen["high"] <= 1
    assert (seen["dataset"], seen["labels"], seen["data_dir"]) == ("digits", None, "/data")
    assert "fid 12.5  fid_floor 1.5  kid 3  kid_floor 0.1" in result.output
    assert seen["inception_weights"] is None and "inception_fid" not in result.output
    # Inception weights imply --evaluate and add torchmetrics' FID.
    result = invoke("sample", "vae", "--logdir", str(logdir), "-n", "10", "--inception-weights", "w.pth",
                    "--out", str(logdir / "eval.png"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert seen["inception_weights"] == "w.pth" and "inception_fid 42" in result.output
