"""Behaviour of the generative models: losses against closed forms, the sampling loop, training, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMPipeline, DDPMPipeline, DDPMScheduler
from torch import nn

from rlgen.backbones import BackboneConfig
from rlgen.config import apply_overrides
from rlgen.generative.diffusion.config import DiffusionConfig
from rlgen.generative.diffusion.sample import make_scheduler, sample, training_scheduler, training_target
from rlgen.generative.diffusion.train import train as train_diffusion
from rlgen.generative.runs import CHECKPOINT_NAME
from rlgen.generative.sampling import generate, interpolation_latents, slerp
from rlgen.generative.vae.config import VAEConfig
from rlgen.generative.vae.losses import elbo, gaussian_kl, importance_sampled_nll
from rlgen.generative.vae.train import train as train_vae
from rlgen.generative.wgan_gp.config import WGANGPConfig
from rlgen.generative.wgan_gp.losses import gradient_penalty, interpolate
from rlgen.generative.wgan_gp.networks import Critic, MLPCritic
from rlgen.generative.wgan_gp.sample import build_critic
from rlgen.generative.wgan_gp.train import train as train_gan
from rlgen.training import load_checkpoint

# ----------------------------------------------------------------------------- tiny configs (digits, 8x8)


def tiny_vae(**fields) -> VAEConfig:
    config = VAEConfig(
        steps=60, batch_size=64, latent_dim=4, encoder=BackboneConfig(kind="small_cnn", channels=[8], features_dim=32),
        decoder_channels=[16, 8], log_interval=20, sample_interval=0, checkpoint_interval=0,
        eval_samples=0, eval_images=100, nll_samples=5,
    )  # fmt: skip
    return apply_overrides(config, fields)


def tiny_gan(**fields) -> WGANGPConfig:
    config = WGANGPConfig(
        steps=30, batch_size=32, latent_dim=8, generator_channels=[16, 8], critic_channels=[8, 16],
        log_interval=10, sample_interval=0, checkpoint_interval=0, eval_samples=0,
    )  # fmt: skip
    return apply_overrides(config, fields)


def tiny_diffusion(**fields) -> DiffusionConfig:
    config = DiffusionConfig(
        steps=40, batch_size=64, learning_rate=2e-3, warmup_steps=5, unet_channels=[16, 32],
        unet_attention=[False, False], layers_per_block=1, beta_schedule="linear", sample_steps=2,
        log_interval=10, sample_interval=0, checkpoint_interval=0, eval_samples=0,
    )  # fmt: skip
    return apply_overrides(config, fields)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny trained run of each model, shared by the tests below."""
    logdir = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    return {
        "vae": train_vae(tiny_vae(), logdir=logdir, device="cpu", progress=False),
        "gan": train_gan(tiny_gan(), logdir=logdir, device="cpu", progress=False),
        "diffusion": train_diffusion(tiny_diffusion(), logdir=logdir, device="cpu", progress=False),
    }


# ----------------------------------------------------------------------------- VAE: ELBO in closed form


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(W z + b, s^2 I) with orthogonal columns of W, so that the
    marginal N(b, W W^T + s^2 I) and the (diagonal) posterior are known exactly."""

    def __init__(self, z_dim: int = 2, side: int = 2, sigma: float = 0.5) -> None:
        gen = torch.Generator().manual_seed(0)
        d = side * side
        q, _ = torch.linalg.qr(torch.randn(d, z_dim, generator=gen, dtype=torch.float64))
        self.scales = torch.tensor([1.5, 0.7], dtype=torch.float64)[:z_dim]
        self.w = q * self.scales  # (D, Z), orthogonal columns
        self.b = torch.randn(d, generator=gen, dtype=torch.float64) * 0.3
        self.sigma, self.side = sigma, side
        self.shift = 0.0  # moves the posterior mean away from the truth

    def marginal_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.w @ self.w.T + self.sigma**2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x.flatten(1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        var = 1.0 / (1.0 + self.scales**2 / self.sigma**2)  # (Z,) diagonal because W^T W is
        mu = (x.flatten(1) - self.b) @ self.w * var / self.sigma**2
        return mu + self.shift, var.log().expand_as(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.w.T + self.b).view(-1, 1, self.side, self.side)


def test_importance_sampled_nll_is_exact_with_the_true_posterior():
    model = LinearGaussian()
    x = torch.randn(5, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    log_scale = torch.tensor(math.log(model.sigma), dtype=torch.float64)
    nll = importance_sampled_nll(x, model.encode, model.decode, "gaussian", log_scale, num_samples=3)
    # Every importance weight equals p(x) when q is the exact posterior, so any K is exact.
    torch.testing.assert_close(nll, -model.marginal_log_prob(x), atol=1e-9, rtol=0)


def test_elbo_matches_log_likelihood_with_true_posterior_and_is_below_it_otherwise():
    model = LinearGaussian()
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    log_px = model.marginal_log_prob(x)
    log_scale = torch.tensor(math.log(model.sigma), dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)

    def mean_elbo(num: int = 20000) -> torch.Tensor:
        mu, logvar = model.encode(x)
        xs = x.repeat(num, 1, 1, 1)
        mus, logvars = mu.repeat(num, 1), logvar.repeat(num, 1)
        z = mus + torch.randn(mus.shape, generator=gen, dtype=torch.float64) * (0.5 * logvars).exp()
        terms = elbo(xs, model.decode(z), mus, logvars, "gaussian", log_scale)
        torch.testing.assert_close(terms.elbo, -terms.recon - terms.kl)
        return terms.elbo.view(num, -1).mean(0)  # (B,)

    torch.testing.assert_close(mean_elbo(), log_px, atol=0.03, rtol=0)
    model.shift = 0.3  # a worse q: the bound drops by exactly KL(q || posterior) > 0
    gap = log_px - mean_elbo()
    assert (gap > 0.2).all(), gap
    # ...and importance sampling with that q recovers most of the gap.
    nll = importance_sampled_nll(x, model.encode, model.decode, "gaussian", log_scale, num_samples=2000, generator=gen)
    assert ((-nll - (log_px - gap)) > 0.8 * gap).all()
    torch.testing.assert_close(-nll, log_px, atol=0.05, rtol=0)


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(-1))


# ----------------------------------------------------------------------------- WGAN-GP


def test_gradient_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared():
    w = torch.tensor([2.0, -1.0, 2.0, 0.0], requires_grad=True)  # |w| = 3

    def critic(x):
        return x.flatten(1) @ w

    real, fake = torch.randn(16, 1, 2, 2), torch.randn(16, 1, 2, 2)
    x_hat = interpolate(real, fake, torch.rand(16, 1, 1, 1))
    penalty = gradient_penalty(critic(x_hat), x_hat, weight=10.0)
    torch.testing.assert_close(penalty, torch.tensor(10.0 * (3.0 - 1.0) ** 2))
    # The penalty stays in the graph, so the critic step descends it: d/dw = 2 lambda (|w| - 1) w / |w|.
    penalty.backward()
    torch.testing.assert_close(w.grad, 2 * 10.0 * (3.0 - 1.0) * w.detach() / 3.0)


def test_gradient_penalty_uses_the_gradient_at_the_interpolated_point():
    # f(x) = |x|^2 / 2 has gradient x; with real == fake the interpolate is that point.
    points = torch.randn(8, 3, 4, 4)
    x_hat = interpolate(points, points.clone(), torch.rand(8, 1, 1, 1))
    penalty = gradient_penalty(0.5 * x_hat.flatten(1).pow(2).sum(1), x_hat, weight=2.0)
    expected = 2.0 * (points.flatten(1).norm(dim=1) - 1).pow(2).mean()
    torch.testing.assert_close(penalty, expected)


def test_wgan_gp_defaults_are_algorithm_1_and_the_critic_has_no_batch_norm():
    config = WGANGPConfig()
    assert (config.gp_lambda, config.n_critic, config.learning_rate) == (10.0, 5, 1e-4)
    assert (config.adam_beta1, config.adam_beta2) == (0.0, 0.9)
    critic = Critic((1, 28, 28), [32, 64, 128])
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    assert critic(torch.zeros(3, 1, 28, 28)).shape == (3,)


# ----------------------------------------------------------------------------- diffusion: schedulers


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_scheduler_round_trip_recovers_x0_from_the_true_target(prediction_type):
    scheduler = DDPMScheduler(beta_schedule="linear", prediction_type=prediction_type)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    noise = torch.randn(4, 1, 8, 8, generator=gen)
    timesteps = torch.tensor([0, 10, 500, 900])
    noisy = scheduler.add_noise(x0, noise, timesteps)
    alpha_bar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    torch.testing.assert_close(noisy, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise)
    target = training_target(scheduler, x0, noise, timesteps, prediction_type)
    for i, t in enumerate(timesteps.tolist()):
        out = scheduler.step(target[i : i + 1], t, noisy[i : i + 1], generator=gen)
        torch.testing.assert_close(out.pred_original_sample, x0[i : i + 1], atol=1e-4, rtol=0)


class OracleDenoiser(nn.Module):
    """The exact denoiser for data that is a point mass at ``centers[label]`` (null label: the last one)."""

    def __init__(self, scheduler: DDPMScheduler, centers: torch.Tensor) -> None:
        super().__init__()
        self.alphas_cumprod = scheduler.alphas_cumprod
        self.prediction_type = scheduler.config.prediction_type
        self.centers = centers  # (K + 1, C, H, W)
        self.num_classes = len(centers) - 1

    def forward(self, sample, timestep, class_labels=None):
        labels = torch.full((len(sample),), self.num_classes) if class_labels is None else class_labels
        x0 = self.centers[labels]
        a = self.alphas_cumprod[torch.as_tensor(timestep).long()]
        eps = (sample - a.sqrt() * x0) / (1 - a).sqrt()
        return eps if self.prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0


@pytest.mark.parametrize(
    ("name", "steps", "prediction_type"),
    [("ddpm", 50, "epsilon"), ("ddim", 20, "epsilon"), ("dpm-solver++", 10, "epsilon"), ("ddim", 20, "v_prediction")],
)
def test_sampling_loop_with_the_exact_denoiser_lands_on_the_data(name, steps, prediction_type):
    train_sched = training_scheduler(tiny_diffusion(prediction_type=prediction_type))
    centers = torch.stack([torch.full((1, 4, 4), 0.3), torch.full((1, 4, 4), -0.5), torch.full((1, 4, 4), 0.1)])
    oracle = OracleDenoiser(train_sched, centers)
    scheduler = make_scheduler(name, train_sched.config)
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 0, 1])
    out = sample(oracle, scheduler, 4, (1, 4, 4), steps, gen, torch.device("cpu"), class_labels=labels)
    torch.testing.assert_close(out, centers[labels], atol=2e-3, rtol=0)
    # Guidance w mixes uncond + w (cond - uncond): for point masses, the mass at c + (w - 1)(c - c_null).
    guided = sample(oracle, scheduler, 2, (1, 4, 4), steps, gen, torch.device("cpu"),
                    class_labels=torch.tensor([0, 1]), guidance_scale=2.0)  # fmt: skip
    expected = 2 * centers[:2] - centers[2]  # (0.5, -1.1 -> clipped to the data range -1)
    torch.testing.assert_close(guided, expected.clamp(-1, 1), atol=2e-3, rtol=0)


def test_unknown_scheduler_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown scheduler 'euler'; choose one of ddpm, ddim, dpm-solver\\+\\+"):
        make_scheduler("euler", DDPMScheduler().config)


# ----------------------------------------------------------------------------- training: losses fall


def _first_last(history, tag):
    return history[tag][0], history[tag][-1]


def test_vae_loss_falls_and_the_nll_estimate_is_tighter_than_the_elbo(runs):
    result = runs["vae"]
    first, last = _first_last(result.history, "losses/elbo")  # -ELBO in nats per image
    assert last < first - 3.0, result.history["losses/elbo"]
    assert {"losses/kl", "losses/recon", "charts/images_per_second"} <= result.history.keys()
    # log p(x) >= IS estimate >= ELBO (on average), so -log p(x) estimate <= -ELBO.
    assert result.metrics["eval/nll"] <= -result.metrics["eval/elbo"] + 0.1, result.metrics


def test_wgan_gp_critic_loss_falls_and_wasserstein_estimate_rises(runs):
    history = runs["gan"].history
    first, last = _first_last(history, "losses/critic")
    assert last < first, history["losses/critic"]
    w_first, w_last = _first_last(history, "charts/wasserstein_estimate")
    assert w_last > w_first, history["charts/wasserstein_estimate"]
    assert "losses/gradient_penalty" in history and "losses/generator" in history


def test_mlp_wgan_gp_learns_and_its_generator_reloads_from_the_run(tmp_path):
    config = tiny_gan(architecture="mlp", generator_hidden_sizes=[32, 64], critic_hidden_sizes=[64, 32])
    result = train_gan(config, logdir=tmp_path, device="cpu", progress=False)
    w_first, w_last = _first_last(result.history, "charts/wasserstein_estimate")
    assert w_last > w_first, result.history["charts/wasserstein_estimate"]
    critic = build_critic(config, (1, 8, 8))
    assert isinstance(critic, MLPCritic) and critic(torch.zeros(3, 1, 8, 8)).shape == (3,)
    assert not any(isinstance(m, (nn.Conv2d, nn.modules.batchnorm._BatchNorm)) for m in critic.modules())
    samples = generate("gan", result.run_dir, num_images=6, seed=3)
    assert samples.images.shape == (6, 1, 8, 8) and samples.images.std() > 0.01


def test_diffusion_loss_falls(runs):
    first, last = _first_last(runs["diffusion"].history, "losses/diffusion")
    assert last < 0.8 * first, runs["diffusion"].history["losses/diffusion"]


def test_transformer_denoiser_loss_falls(tmp_path):
    transformer = BackboneConfig(kind="transformer", hidden_sizes=[], d_model=32, n_heads=2, n_layers=2,
                                 causal=False, pool="none")  # fmt: skip
    config = tiny_diffusion(denoiser="transformer", transformer=transformer)
    result = train_diffusion(config, logdir=tmp_path, device="cpu", progress=False)
    first, last = _first_last(result.history, "losses/diffusion")
    assert last < 0.8 * first, result.history["losses/diffusion"]


# ----------------------------------------------------------------------------- sampling and checkpoints


@pytest.mark.parametrize("model", ["vae", "gan", "diffusion"])
def test_samples_have_the_data_shape_and_range_and_repeat_with_the_seed(runs, model):
    run_dir = runs[model].run_dir
    samples = generate(model, run_dir, num_images=6, seed=3)
    assert samples.images.shape == (6, 1, 8, 8)
    assert samples.images.min() >= 0 and samples.images.max() <= 1
    assert samples.images.std() > 0.01  # not a blank grid
    again = generate(model, run_dir, num_images=6, seed=3)
    torch.testing.assert_close(samples.images, again.images, atol=0, rtol=0)


def test_slerp_keeps_endpoints_and_norm():
    z0, z1 = torch.randn(3, 16), torch.randn(3, 16)
    z1 = z1 / z1.norm(dim=1, keepdim=True) * z0.norm(dim=1, keepdim=True)
    path = slerp(z0, z1, torch.linspace(0, 1, 5))  # (3, 5, 16)
    torch.testing.assert_close(path[:, 0], z0)
    torch.testing.assert_close(path[:, -1], z1)
    torch.testing.assert_close(path.norm(dim=-1), z0.norm(dim=1, keepdim=True).expand(3, 5))
    rows = interpolation_latents(2, 4, 16, torch.Generator().manual_seed(0)).view(2, 4, 16)
    assert not torch.allclose(rows[:, 0], rows[:, -1])


def test_vae_interpolation_rows_walk_between_two_images(runs):
    samples = generate("vae", runs["vae"].run_dir, num_images=16, interpolate=True)
    assert samples.images.shape == (16, 1, 8, 8) and samples.nrow == 8
    rows = samples.images.view(2, 8, -1)
    step = (rows[:, 1:] - rows[:, :-1]).norm(dim=-1)  # neighbours differ less than the endpoints
    assert (step.max(dim=1).values < (rows[:, -1] - rows[:, 0]).norm(dim=-1)).all()


def test_vae_resume_continues_bit_exactly(tmp_path):
    # 1437 digits / 64 = 22 batches per epoch: stopping at an epoch end makes the data order resumable.
    straight = train_vae(tiny_vae(steps=44), logdir=tmp_path / "a", device="cpu", progress=False)
    half = train_vae(tiny_vae(steps=22), logdir=tmp_path / "b", device="cpu", progress=False)
    resumed = train_vae(tiny_vae(steps=44), logdir=tmp_path / "b", device="cpu", resume=half.run_dir, progress=False)
    assert resumed.run_dir == half.run_dir and resumed.step == 44
    a = load_checkpoint(straight.run_dir / CHECKPOINT_NAME)
    b = load_checkpoint(resumed.run_dir / CHECKPOINT_NAME)
    assert a.meta["step"] == b.meta["step"] == 44
    weights = [k for k in a.tensors if k.startswith(("model/", "optim/"))]
    assert weights
    for key in weights:
        torch.testing.assert_close(a.tensors[key], b.tensors[key], atol=0, rtol=0, msg=key)


@pytest.mark.parametrize("pipeline_cls", [DDPMPipeline, DDIMPipeline])
def test_diffusers_pipeline_loads_the_run_and_matches_our_sampling_loop(runs, pipeline_cls):
    run_dir = runs["diffusion"].run_dir
    assert (run_dir / "scheduler_config.json").is_file() and (run_dir / "model_index.json").is_file()
    pipeline = pipeline_cls.from_pretrained(run_dir)
    ours_name = "ddpm" if pipeline_cls is DDPMPipeline else "ddim"
    theirs = pipeline(batch_size=4, generator=torch.Generator().manual_seed(5), num_inference_steps=5,
                      output_type="np").images  # fmt: skip  # (N, H, W, C) in [0, 1]
    ours = generate("diffusion", run_dir, num_images=4, seed=5, scheduler=ours_name, steps=5).images
    torch.testing.assert_close(ours.permute(0, 2, 3, 1), torch.from_numpy(theirs), atol=1e-5, rtol=0)


def test_bad_config_values_name_the_field():
    with pytest.raises(ValueError, match="n_critic=0 must be at least 1"):
        apply_overrides(WGANGPConfig(), {"n_critic": 0})
    with pytest.raises(ValueError, match="prediction_type='sample' is not allowed"):
        apply_overrides(DiffusionConfig(), {"prediction_type": "sample"})
    with pytest.raises(ValueError, match="unet_attention"):
        apply_overrides(DiffusionConfig(), {"unet_channels": [32, 64, 64]})
    with pytest.raises(ValueError, match="beta=-1.0 must be >= 0"):
        apply_overrides(VAEConfig(), {"beta": -1})
