"""Latent diffusion on a trained VAE: decoding to the dataset's images, sampling unchanged, resume, refusals."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from rlgen.generative.configs import make_config
from rlgen.generative.diffusion.sample import load
from rlgen.generative.diffusion.train import train as train_diffusion
from rlgen.generative.sampling import generate
from rlgen.generative.vae.train import train as train_vae

VAE = ["steps=60", "batch_size=64", "latent_dim=6", "eval_images=50", "nll_samples=2", "eval_samples=0",
       "sample_interval=0", "checkpoint_interval=0", "log_interval=20"]
LATENT = ["steps=30", "batch_size=64", "denoiser=mlp", "mlp_hidden_sizes=[32,32]", "warmup_steps=2",
          "sample_steps=4", "eval_samples=0", "sample_interval=0", "checkpoint_interval=0", "log_interval=10",
          "class_conditional=true"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ldm")
    return train_vae(make_config("vae", "digits", None, None, VAE), logdir=root, device="cpu", progress=False)


def latent_config(vae_run, *more):
    return make_config("diffusion", "digits", None, None, [*LATENT, f"vae_run={vae_run.run_dir}", *more])


def test_latent_samples_decode_to_images_of_the_datasets_shape_and_the_vae_is_copied(vae_run, tmp_path):
    result = train_diffusion(latent_config(vae_run), logdir=tmp_path, device="cpu", progress=False)
    trained = load(result.run_dir, torch.device("cpu"))
    assert trained.shape == (6,) and trained.codec is not None
    samples = generate("diffusion", result.run_dir, num_images=10, seed=0, device="cpu", class_label=3, guidance=2.0)
    assert samples.images.shape == (10, 1, 8, 8)
    assert samples.images.min() >= 0.0 and samples.images.max() <= 1.0
    # The codec's VAE is the VAE run's, frozen (the diffusion run trained only its denoiser).
    vae = {k[len("model/vae/"):]: v for k, v in safetensors.torch.load_file(str(vae_run.checkpoint)).items()
           if k.startswith("model/vae/")}
    codec = {k[len("model/codec/vae."):]: v for k, v in safetensors.torch.load_file(str(result.checkpoint)).items()
             if k.startswith("model/codec/vae.")}
    assert codec.keys() == vae.keys() and all(torch.equal(codec[k], vae[k]) for k in vae)
    # The latents are scaled to unit spread over the training images.
    scale = float(trained.codec.scale)
    assert scale > 0 and scale != 1.0


def test_a_latent_run_resumes_exactly_without_its_vae_run(vae_run, tmp_path, monkeypatch):
    import shutil

    from test_generative_resume import StopAfter, _tensors

    from rlgen.generative import plumbing

    source = tmp_path / "vae"
    shutil.copytree(vae_run.run_dir, source)
    config = make_config("diffusion", "digits", None, None, [*LATENT, f"vae_run={source}"])
    whole = train_diffusion(config, logdir=tmp_path / "whole", device="cpu", progress=False)
    StopAfter.after = 17
    monkeypatch.setattr(plumbing, "GracefulInterrupt", StopAfter)
    part = train_diffusion(config, logdir=tmp_path / "parts", device="cpu", progress=False)
    monkeypatch.undo()
    assert part.interrupted
    shutil.rmtree(source)  # resume and sampling read only the diffusion run's own checkpoint
    resumed = train_diffusion(config, logdir=tmp_path / "x", device="cpu", resume=part.run_dir, progress=False)
    a, b = _tensors(whole.checkpoint), _tensors(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert generate("diffusion", resumed.run_dir, num_images=4, seed=0, device="cpu").images.shape == (4, 1, 8, 8)


def test_latent_configs_that_do_not_fit_are_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="uses denoiser=mlp"):
        make_config("diffusion", "digits", None, None, ["vae_run=somewhere"])
    with pytest.raises(ValueError, match="pass --set vae_run=RUN_DIR"):  # before anything is built or written
        train_diffusion(make_config("diffusion", "digits", None, None, ["denoiser=mlp"]), logdir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_latent_schedule_does_not_clip_latents_to_the_pixel_range(vae_run, tmp_path):
    result = train_diffusion(latent_config(vae_run), logdir=tmp_path, device="cpu", progress=False)
    trained = load(result.run_dir, torch.device("cpu"))
    assert trained.scheduler_config["clip_sample"] is False  # saved with the run, so every sampler inherits it
