"""ONNX export: onnxruntime gives what torch gives, for every exportable model kind."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from rlgen.cli.main import cli  # noqa: E402
from rlgen.dqn import DQNAgent, DQNConfig  # noqa: E402
from rlgen.dqn.actors import SequenceActor  # noqa: E402
from rlgen.dqn.networks import build_network  # noqa: E402
from rlgen.envs import make_vector_env  # noqa: E402
from rlgen.export.onnx import export_run  # noqa: E402
from rlgen.export.runtime import OnnxPolicy, onnx_metadata  # noqa: E402

ATOL = 1e-5  # float32 graphs; onnxruntime fuses some ops differently from torch

AGENTS = {
    "mlp-dueling": ("CartPole-v1", (4,), np.float32, {"kind": "mlp", "hidden_sizes": [32, 32]}, {"dueling": True}),
    "cnn-bool": ("MinAtar/Breakout-v1", (4, 10, 10), np.bool_,
                 {"kind": "small_cnn", "channels": [8], "features_dim": 16}, {}),
    "cnn-uint8": ("CartPole-v1", (2, 12, 12), np.uint8, {"kind": "small_cnn", "channels": [8], "features_dim": 16}, {}),
    "lstm": ("rlgen/CartPoleNoVel-v0", (2,), np.float32, {"kind": "lstm", "rnn_hidden_size": 16, "hidden_sizes": [16]}, {}),
    "gru": ("rlgen/CartPoleNoVel-v0", (2,), np.float32, {"kind": "gru", "rnn_hidden_size": 16, "rnn_layers": 2}, {}),
    "transformer": ("rlgen/CartPoleNoVel-v0", (2,), np.float32,
                    {"kind": "transformer", "d_model": 16, "n_heads": 2, "n_layers": 1}, {"context_length": 4}),
    "tcn": ("rlgen/CartPoleNoVel-v0", (2,), np.float32, {"kind": "tcn", "tcn_channels": [8, 8]}, {"context_length": 6}),
}


def _agent(case: str, tmp_path) -> tuple[DQNAgent, object]:
    env_id, shape, dtype, backbone, extra = AGENTS[case]
    config = DQNConfig(env_id=env_id, backbone=backbone, **extra)
    space = gym.spaces.Box(0, 1 if dtype == np.bool_ else 255, shape, dtype)
    torch.manual_seed(0)
    agent = DQNAgent(config, build_network(config, space, 2 if "CartPole" in env_id else 3), space)
    return agent, agent.save(tmp_path / f"{case}.safetensors")


def _obs(space, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if space.dtype == np.bool_:
        return rng.random((n, *space.shape)) < 0.3
    if space.dtype == np.uint8:
        return rng.integers(0, 256, (n, *space.shape), dtype=np.uint8)
    return rng.normal(size=(n, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("case", list(AGENTS))
def test_q_policies_match_torch_for_any_batch_size(case, tmp_path):
    agent, path = _agent(case, tmp_path)
    (onnx_file,) = export_run(path, tmp_path / f"{case}.onnx")
    meta = onnx_metadata(onnx_file)
    assert meta["rlgen_graph"] == "q_policy" and meta["opset"] == 18 and meta["algo"] == "dqn"
    assert meta["obs_shape"] == list(agent.obs_space.shape) and meta["num_actions"] == agent.num_actions
    assert meta["config"]["backbone"]["kind"] == AGENTS[case][3]["kind"]
    for batch in (1, 5):  # a dynamic batch axis
        obs = _obs(agent.obs_space, batch, seed=batch)
        policy = OnnxPolicy(onnx_file, batch)
        q_onnx = policy.q_values(obs)
        if agent.is_sequence:
            q_torch = SequenceActor(agent.q_net, batch, "cpu").step(obs).numpy()
        else:
            with torch.no_grad():
                q_torch = agent.q_net(torch.as_tensor(obs)).numpy()
        np.testing.assert_allclose(q_onnx, q_torch, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("case", ["lstm", "gru", "transformer", "tcn"])
def test_a_recurrent_policy_stepped_through_episodes_with_its_state_fed_back_matches_torch(case, tmp_path):
    agent, path = _agent(case, tmp_path)
    (onnx_file,) = export_run(path, tmp_path / f"{case}.onnx")
    envs = make_vector_env("rlgen/CartPoleNoVel-v0", 3, seed=0)
    torch_actor, onnx_policy = SequenceActor(agent.q_net, 3, "cpu"), OnnxPolicy(onnx_file, 3)
    obs, _ = envs.reset(seed=0)
    rng, resets = np.random.default_rng(0), 0
    for _ in range(150):
        q_torch = torch_actor.step(obs).numpy()
        q_onnx = onnx_policy.q_values(obs)
        np.testing.assert_allclose(q_onnx, q_torch, atol=ATOL, rtol=1e-5)
        obs, _, terms, truncs, _ = envs.step(rng.integers(0, 2, size=3))  # random play: short episodes
        torch_actor.observe(terms, truncs)
        onnx_policy.observe(terms, truncs)
        resets += int((terms | truncs).sum())
    assert resets > 3  # the state was cleared at episode starts along the way


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("case", ["mlp-dueling", "lstm"])
def test_eval_onnx_gives_the_torch_policys_returns_on_the_same_seeds(case, tmp_path):
    agent, path = _agent(case, tmp_path)
    assert _invoke("export", path, "--out", tmp_path / "policy.onnx").exit_code == 0
    with_torch = _invoke("eval", path, "--episodes", "12", "--seed", "3")
    with_onnx = _invoke("eval", "--onnx", tmp_path / "policy.onnx", "--episodes", "12", "--seed", "3")
    assert with_torch.exit_code == 0 and with_onnx.exit_code == 0, with_onnx.output
    assert with_onnx.stdout.split("(onnxruntime)")[0].strip() == with_torch.stdout.strip()


GENERATIVE = {
    "vae": ["--set", "encoder.channels=[8]", "--set", "encoder.features_dim=16", "--set", "decoder_channels=[8, 8]",
            "--set", "latent_dim=4", "--set", "nll_samples=2", "--set", "eval_images=50"],
    "gan": ["--set", "generator_channels=[8, 8]", "--set", "critic_channels=[8, 8]", "--set", "latent_dim=4",
            "--set", "n_critic=1"],
    "diffusion": ["--set", "unet_channels=[8, 16]", "--set", "unet_attention=[false, false]",
                  "--set", "layers_per_block=1", "--set", "norm_num_groups=4", "--set", "warmup_steps=1",
                  "--set", "sample_steps=2", "--set", "class_conditional=true"],
}  # fmt: skip


@pytest.fixture(scope="module")
def generative_runs(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("gen")
    for model, extra in GENERATIVE.items():
        result = _invoke("train", model, "--data", "digits", "--steps", "2", "--batch-size", "16", "--device", "cpu",
                         "--quiet", "--logdir", logdir, "--set", "eval_samples=0", "--set", "sample_interval=0",
                         "--set", "checkpoint_interval=0", *extra)
        assert result.exit_code == 0, result.output
    return {model: next(logdir.glob(f"digits__{model}__*")) for model in GENERATIVE}


def _run(path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_generator_encoder_decoder_and_denoiser_match_torch(generative_runs, tmp_path):
    from rlgen.generative.diffusion.sample import load as load_diffusion
    from rlgen.generative.vae.sample import decode_images
    from rlgen.generative.vae.sample import load as load_vae
    from rlgen.generative.wgan_gp.sample import generate_images
    from rlgen.generative.wgan_gp.sample import load as load_gan

    cpu = torch.device("cpu")
    z = torch.randn(6, 4)
    (gen_file,) = export_run(generative_runs["gan"], tmp_path / "gen.onnx")
    generator, _, _ = load_gan(generative_runs["gan"], cpu)
    np.testing.assert_allclose(_run(gen_file, {"z": z.numpy()})[0], generate_images(generator, z).numpy(), atol=ATOL)

    enc_file, dec_file = export_run(generative_runs["vae"], tmp_path / "vae")
    assert (enc_file.name, dec_file.name) == ("vae_encoder.onnx", "vae_decoder.onnx")
    vae, config, _ = load_vae(generative_runs["vae"], cpu)
    images = torch.rand(6, 1, 8, 8)
    mu, logvar = _run(enc_file, {"images": images.numpy()})
    with torch.no_grad():
        mu_t, logvar_t = vae.encode(images)
    np.testing.assert_allclose(mu, mu_t.numpy(), atol=ATOL)
    np.testing.assert_allclose(logvar, logvar_t.numpy(), atol=ATOL)
    np.testing.assert_allclose(_run(dec_file, {"z": z.numpy()})[0], decode_images(vae, z, config.likelihood).numpy(),
                               atol=ATOL)

    (den_file,) = export_run(generative_runs["diffusion"], tmp_path / "denoiser.onnx")
    denoiser, _, _, scheduler_config, _, _ = load_diffusion(generative_runs["diffusion"], cpu)
    sample, steps, labels = torch.randn(5, 1, 8, 8), torch.tensor([0, 10, 200, 500, 999]), torch.tensor([0, 3, 9, 10, 1])
    out = _run(den_file, {"sample": sample.numpy(), "timestep": steps.numpy(), "class_labels": labels.numpy()})[0]
    with torch.no_grad():
        expected = denoiser(sample, steps, labels).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-4)  # a UNet: deeper sums, a looser bound
    meta = onnx_metadata(den_file)
    assert meta["scheduler_config"]["num_train_timesteps"] == scheduler_config["num_train_timesteps"]


def test_what_cannot_be_exported_or_run_is_one_clear_line(tmp_path):
    agent, path = _agent("mlp-dueling", tmp_path)
    for args, fragment in [
        (["export", path, "--format", "tflite"], "--format 'tflite' is not supported"),
        (["export", path, "--opset", "3"], "--opset 3"),
        (["export", tmp_path / "none"], "no checkpoint at"),
        (["eval", "--onnx", tmp_path / "none.onnx"], "does not exist"),
        (["eval", path, "--onnx", tmp_path / "x.onnx"], "either RUN or --onnx"),
    ]:
        result = _invoke(*args)
        assert result.exit_code == 2 and fragment in result.stderr, (args, result.stderr)
    notes = tmp_path / "notes.onnx"
    notes.write_text("not a model")
    result = _invoke("eval", "--onnx", notes)
    assert result.exit_code == 2 and "not an ONNX model" in result.stderr


def test_the_documented_onnx_sampling_loop_draws_what_rlgen_sample_draws(generative_runs, tmp_path):
    from rlgen.export.diffusion_sampling import sample_onnx_denoiser
    from rlgen.generative.sampling import generate

    (den_file,) = export_run(generative_runs["diffusion"], tmp_path / "denoiser.onnx")
    ours = sample_onnx_denoiser(den_file, 4, steps=5, scheduler="ddim", class_label=3, seed=7)
    expected = generate("diffusion", generative_runs["diffusion"], num_images=4, seed=7, device=torch.device("cpu"),
                        scheduler="ddim", steps=5, class_label=3, guidance=1.0)
    np.testing.assert_allclose(ours, expected.images.numpy(), atol=1e-4)  # both in [0, 1]


def test_a_network_the_exporter_cannot_trace_is_one_line_saying_why(tmp_path, monkeypatch):
    import rlgen.export.wrappers as wrappers

    class Untraceable(wrappers.QPolicy):
        def forward(self, obs):
            if obs.sum() > 0:  # data-dependent control flow: torch.export refuses it
                return super().forward(obs)
            return super().forward(-obs)

    monkeypatch.setattr(wrappers, "QPolicy", Untraceable)
    _, path = _agent("mlp-dueling", tmp_path)
    result = _invoke("export", path)
    assert result.exit_code == 2 and "cannot be exported to ONNX" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
