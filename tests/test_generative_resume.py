"""The generative trainers resume exactly, save before they evaluate, and own their random streams."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

import rlgen.generative.plumbing as plumbing
from rlgen.generative.configs import make_config, model_parts

# Tiny nets on the embedded digits; the batches cross an epoch boundary (1437 images / 64 per batch).
TINY = {
    "vae": ["encoder.channels=[8]", "encoder.features_dim=16", "decoder_channels=[8, 8]", "latent_dim=4",
            "nll_samples=2", "eval_images=50", "binarize=true"],
    "gan": ["generator_channels=[8, 8]", "critic_channels=[8, 8]", "latent_dim=4", "n_critic=2"],
    "diffusion": ["unet_channels=[8, 16]", "unet_attention=[false, false]", "layers_per_block=1",
                  "norm_num_groups=4", "warmup_steps=2", "sample_steps=2", "class_conditional=true"],
}  # fmt: skip
COMMON = ["eval_samples=0", "log_interval=3", "sample_interval=0", "checkpoint_interval=0", "batch_size=64"]
STEPS = 30


def _config(model: str, steps: int = STEPS):
    return make_config(model, "digits", overrides=COMMON + TINY[model], steps=steps)


class StopAfter(plumbing.GracefulInterrupt):
    """Ctrl-C after ``after`` steps."""

    after = 0

    def __enter__(self):
        super().__enter__()
        self.checks = 0
        return self

    @property
    def requested(self) -> bool:
        self.checks += 1
        return self.checks > StopAfter.after

    @requested.setter
    def requested(self, value) -> None:
        pass


def _tensors(path):
    return {k: v for k, v in safetensors.torch.load_file(str(path)).items() if not k.startswith("rng/")}


@pytest.mark.parametrize("model", ["vae", "gan", "diffusion"])
def test_interrupted_and_resumed_equals_uninterrupted_tensor_by_tensor(model, tmp_path, monkeypatch):
    train = model_parts(model)[1]
    config = _config(model)
    whole = train(config, logdir=tmp_path / "whole", device="cpu", progress=False)

    StopAfter.after = 23  # mid-epoch (22 batches per epoch), and for the gan mid-way through a critic phase's data
    monkeypatch.setattr(plumbing, "GracefulInterrupt", StopAfter)
    part = train(config, logdir=tmp_path / "parts", device="cpu", progress=False)
    monkeypatch.undo()
    assert part.interrupted and part.step == StopAfter.after + 1  # the step that saw the request finished
    resumed = train(config, logdir=tmp_path / "ignored", device="cpu", resume=part.run_dir, progress=False)
    assert resumed.run_dir == part.run_dir and resumed.step == STEPS and not resumed.interrupted

    a, b = _tensors(whole.checkpoint), _tensors(resumed.checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_the_first_vae_run_on_a_machine_keeps_its_checkpoint_and_evaluates(tmp_path, monkeypatch):
    """The domain classifier is trained inside the final evaluation when it is not cached yet."""
    monkeypatch.setenv("RLGEN_CACHE", str(tmp_path / "empty-cache"))
    config = make_config("vae", "digits", overrides=[*COMMON[1:], *TINY["vae"], "eval_samples=50"], steps=4)
    result = model_parts("vae")[1](config, logdir=tmp_path, device="cpu", progress=False)
    assert result.checkpoint.is_file()
    assert {"eval/fid", "eval/kid", "eval/elbo"} <= result.metrics.keys()


def test_a_failing_final_evaluation_never_costs_the_checkpoint(tmp_path, monkeypatch):
    import rlgen.generative.vae.train as vae_train
    from rlgen.training import load_checkpoint

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(vae_train, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        vae_train.train(_config("vae", steps=5), logdir=tmp_path, device="cpu", progress=False)
    (run,) = tmp_path.iterdir()
    assert load_checkpoint(run / "checkpoint.safetensors").meta["step"] == 5



def test_a_diffusion_run_shorter_than_its_warmup_trains_and_says_so(tmp_path, caplog):
    """`rlgen train diffusion --steps 200` on a preset with a longer warmup: warm up over a tenth instead."""
    overrides = [o for o in COMMON + TINY["diffusion"] if not o.startswith("warmup_steps")] + ["warmup_steps=500"]
    config = make_config("diffusion", "digits", overrides=overrides, steps=20)
    with caplog.at_level("WARNING"):
        result = model_parts("diffusion")[1](config, logdir=tmp_path, device="cpu", progress=False)
    assert result.step == 20 and "warming the learning rate up over 2 steps" in caplog.text
