"""Starting part of a model from another run: exact partial loads, freezing, fine-tuning, resume, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
from click.testing import CliRunner
from test_bad_input import _tree
from test_dqn_resume import StopAfter, _assert_same, _drain, _tensors

from rlgen.cli.main import cli
from rlgen.data.frames import collect_frames, save_frames
from rlgen.dqn import make_config
from rlgen.dqn.networks import build_network
from rlgen.dqn.train import train, train_steps
from rlgen.envs import make_vector_env
from rlgen.generative.configs import make_config as make_generative_config
from rlgen.generative.vae.train import train as train_vae
from rlgen.training.transfer import TransferConfig, load_transfer, observation_inputs, optimizer_params

TINY_VAE = ["steps=40", "batch_size=64", "latent_dim=4", "eval_images=50", "nll_samples=2", "log_interval=20",
            "sample_interval=0", "checkpoint_interval=0"]
TINY_MINATAR = dict(total_timesteps=1200, learning_starts=300, buffer_size=2000, eval_episodes=0, num_envs=2,
                    train_freq=2, target_update_interval=200)


def weights(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in safetensors.torch.load_file(str(path)).items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    """A VAE trained on frames of random MinAtar Breakout; its encoder is the MinAtar preset's CNN."""
    root = tmp_path_factory.mktemp("vae")
    frames = save_frames(collect_frames("MinAtar/Breakout-v1", 1500, seed=0), root / "breakout.safetensors",
                         "MinAtar/Breakout-v1", 0)
    config = make_generative_config("vae", str(frames), "minatar", None, TINY_VAE)
    return train_vae(config, logdir=root / "runs", device="cpu", progress=False).run_dir


def minatar(tmp_path, *overrides: str, **fields):
    return make_config("MinAtar/Breakout-v1", seed=1, overrides=list(overrides), **{**TINY_MINATAR, **fields})


def from_vae(vae_run: Path, *more: str) -> list[str]:
    return [f"transfer.init_from={vae_run}:vae.encoder", "transfer.init_into=q_net.backbone", *more]


def test_a_partial_load_copies_exactly_the_named_tensors_and_nothing_else(vae_run, tmp_path):
    config = minatar(tmp_path, *from_vae(vae_run))
    envs = make_vector_env(config.env_id, 1, seed=0)
    space = envs.single_observation_space
    q_net = build_network(config, space, 3)
    before = {k: v.clone() for k, v in q_net.state_dict().items()}
    names = load_transfer(config.transfer, {"q_net": q_net},
                          observation_inputs(str(space.dtype), tuple(space.shape), config.backbone.kind))
    encoder = weights(vae_run / "checkpoint.safetensors", "model/vae/encoder.")
    after = q_net.state_dict()
    assert sorted(names) == sorted(f"q_net.backbone.{k}" for k in encoder)
    for key, value in after.items():
        if key.startswith("backbone."):
            assert torch.equal(value, encoder[key[len("backbone."):]]), key
        else:
            assert torch.equal(value, before[key]), key  # the head is not touched


def test_frozen_weights_never_move_while_the_rest_trains(vae_run, tmp_path):
    result = train(minatar(tmp_path, *from_vae(vae_run, "transfer.freeze=true")), device="cpu",
                   logdir=tmp_path, progress=False)
    encoder = weights(vae_run / "checkpoint.safetensors", "model/vae/encoder.")
    for prefix in ("model/q_net/backbone.", "model/target_net/backbone."):
        saved = weights(result.checkpoint, prefix)
        assert saved.keys() == encoder.keys()
        for key in saved:
            assert torch.equal(saved[key], encoder[key]), key
    scratch = train(minatar(tmp_path), device="cpu", logdir=tmp_path / "scratch", progress=False)
    head = weights(result.checkpoint, "model/q_net/q.")  # trained (and from the same init as from scratch)
    init = weights(scratch.checkpoint, "model/q_net/q.")
    assert any(not torch.equal(head[k], init[k]) for k in head)


def test_fine_tuning_trains_the_loaded_part_at_its_own_learning_rate(vae_run, tmp_path):
    config = minatar(tmp_path, *from_vae(vae_run, "transfer.lr_factor=0.1"), learning_rate=1e-3)
    q_net = build_network(config, make_vector_env(config.env_id, 1, seed=0).single_observation_space, 3)
    groups = optimizer_params(config.transfer, "q_net", q_net, config.learning_rate)
    assert [g.get("lr") for g in groups] == [None, pytest.approx(1e-4)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in q_net.backbone.parameters()}
    result = train(config, device="cpu", logdir=tmp_path, progress=False)
    encoder = weights(vae_run / "checkpoint.safetensors", "model/vae/encoder.")
    tuned = weights(result.checkpoint, "model/q_net/backbone.")
    assert any(not torch.equal(tuned[k], encoder[k]) for k in tuned)  # fine-tuned, so it moved


def test_a_frozen_run_resumes_exactly_even_after_its_source_is_gone(vae_run, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(vae_run, source)
    config = minatar(tmp_path, *from_vae(source, "transfer.freeze=true"))
    whole = train(config, device="cpu", logdir=tmp_path / "whole", progress=False)
    part = _drain(train_steps(config, torch.device("cpu"), logdir=tmp_path / "parts", interrupt=StopAfter(200)))
    assert part.interrupted
    shutil.rmtree(source)  # the checkpoint holds the loaded weights; the source is not read again
    resumed = train(config, device="cpu", resume=part.run_dir, progress=False)
    _assert_same(_tensors(whole.checkpoint), _tensors(resumed.checkpoint))


def test_a_vae_encoder_can_start_from_another_vae_and_stay_frozen(tmp_path):
    first = train_vae(make_generative_config("vae", "digits", None, None, TINY_VAE), logdir=tmp_path, device="cpu",
                      progress=False)
    config = make_generative_config("vae", "digits", None, None, [
        *TINY_VAE, "seed=5", f"transfer.init_from={first.run_dir}:vae.encoder", "transfer.freeze=true"])
    second = train_vae(config, logdir=tmp_path, device="cpu", progress=False)
    a = weights(first.checkpoint, "model/vae/encoder.")
    b = weights(second.checkpoint, "model/vae/encoder.")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    decoder_a, decoder_b = weights(first.checkpoint, "model/vae/decoder."), weights(second.checkpoint, "model/vae/decoder.")
    assert any(not torch.equal(decoder_a[k], decoder_b[k]) for k in decoder_a)


@pytest.mark.parametrize("sets, message", [
    (["transfer.init_from={vae}:vae.encoder", "transfer.init_into=q_net.backbone"], "reads inputs in [0, 1], this run"),
    (["transfer.init_from={vae}:vae.encoder"], "names module 'vae', which this run does not have"),
    (["transfer.init_from={vae}:vae.nothing", "transfer.init_into=q_net.backbone"], "has no tensors under 'vae.nothing'"),
    (["transfer.init_from={root}/missing:vae.encoder"], "is not a run directory"),
    (["transfer.init_from=no-colon"], "must be RUN_DIR:MODULE"),
    (["transfer.freeze=true"], "need transfer.init_from"),
    (["transfer.init_from={vae}:vae.encoder", "transfer.lr_factor=0"], "lr_factor=0.0 must be"),
])
def test_bad_transfers_are_one_line_and_change_nothing(vae_run, tmp_path, sets, message):
    root = vae_run.parent.parent
    sets = [s.format(vae=vae_run, root=root) for s in sets]
    before = _tree(root)
    args = ["train-dqn", "CartPole-v1", "--total-steps", "600", "--quiet", "--logdir", str(root / "runs"),
            *[a for s in sets for a in ("--set", s)]]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert _tree(root) == before


def test_a_shape_mismatch_names_both_shapes(vae_run, tmp_path):
    config = minatar(tmp_path, *from_vae(vae_run), "backbone.features_dim=64")
    with pytest.raises(ValueError, match=r"shape \(128, 1600\) in .* but q_net.backbone.head.0.weight has shape \(64, 1600\)"):
        train(config, device="cpu", logdir=tmp_path, progress=False)
    assert not list(tmp_path.glob("*dqn*"))


def test_collected_frames_are_a_dataset_with_every_tenth_frame_held_out(tmp_path):
    from rlgen.data import load_dataset

    frames = collect_frames("MinAtar/Breakout-v1", 100, seed=3)
    assert frames.shape == (100, 4, 10, 10) and frames.dtype.name == "uint8" and set(frames.ravel()) <= {0, 255}
    path = save_frames(frames, tmp_path / "f.safetensors", "MinAtar/Breakout-v1", 3)
    train_split, test_split = load_dataset(str(path), "train"), load_dataset(str(path), "test")
    assert (len(train_split.images), len(test_split.images)) == (90, 10)
    assert torch.equal(test_split.images, torch.from_numpy(frames[::10]))
    assert train_split.name == "f"


def test_collect_frames_refuses_an_environment_without_images_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["collect-frames", "CartPole-v1", "--out", str(tmp_path / "x.safetensors")])
    assert result.exit_code == 2 and "not images" in result.output and len(result.output.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("model, part, sets", [
    ("gan", "critic.features", ["steps=6", "batch_size=32", "latent_dim=8", "generator_channels=[16,8]", "critic_channels=[8,16]",
                       "log_interval=3", "sample_interval=0", "checkpoint_interval=0", "eval_samples=0", "n_critic=2"]),
    ("diffusion", "denoiser.unet.down_blocks", ["steps=6", "batch_size=32", "unet_channels=[8,16]", "unet_attention=[false,false]",
                               "norm_num_groups=4", "warmup_steps=1", "log_interval=3", "sample_interval=0",
                               "checkpoint_interval=0", "eval_samples=0", "sample_steps=2"]),
])
def test_a_gan_critic_and_a_denoiser_start_from_another_run_and_stay_frozen(model, part, sets, tmp_path):
    from rlgen.generative.configs import model_parts

    train_model = model_parts(model)[1]
    first = train_model(make_generative_config(model, "digits", None, None, sets), logdir=tmp_path, device="cpu",
                        progress=False)
    config = make_generative_config(model, "digits", None, None, [
        *sets, "seed=9", f"transfer.init_from={first.run_dir}:{part}", "transfer.freeze=true"])
    second = train_model(config, logdir=tmp_path, device="cpu", progress=False)
    prefix = "model/" + part.replace(".", "/", 1) + "."
    a, b = weights(first.checkpoint, prefix), weights(second.checkpoint, prefix)
    assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    whole = part.split(".")[0]
    with pytest.raises(ValueError, match="leaves it nothing to train"):
        train_model(make_generative_config(model, "digits", None, None, [
            *sets, f"transfer.init_from={first.run_dir}:{whole}", "transfer.freeze=true"]), logdir=tmp_path / "x")
