"""WGAN-GP training loop, top to bottom, as the paper's Algorithm 1 (Gulrajani et al., 2017).

Each generator iteration follows ``n_critic`` critic iterations; each critic
iteration draws fresh real images, fresh z and fresh interpolation points.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlgen.data import to_model_range
from rlgen.generative.plumbing import GenerativeRun
from rlgen.generative.runs import sample_metrics
from rlgen.generative.wgan_gp.config import WGANGPConfig
from rlgen.generative.wgan_gp.losses import gradient_penalty, interpolate
from rlgen.generative.wgan_gp.sample import (
    ALGO,
    build_critic,
    build_generator,
    generate_images,
)
from rlgen.training import (
    Precision,
    TrainResult,
    gradient_step,
    make_optimizer,
    maybe_compile,
)


def train(
    config: WGANGPConfig,
    *,
    logdir: str | Path = "runs",
    device: str = "auto",
    data_dir: str | None = None,
    download: bool = False,
    resume: str | Path | None = None,
    progress: bool | None = None,
    on_eval=None,
) -> TrainResult:
    """Train a WGAN-GP; writes TensorBoard logs and checkpoints into a new (or the resumed) run dir."""
    run = GenerativeRun(
        ALGO, config, window=("losses/critic", "losses/gradient_penalty", "charts/wasserstein_estimate",
                              "losses/generator"),
        images_per_step=config.batch_size * (config.n_critic + 1), logdir=logdir, device=device,
        data_dir=data_dir, download=download, resume=resume, progress=progress, on_eval=on_eval,
    )  # fmt: skip
    torch_device = run.device
    image_shape = tuple(run.data["image_shape"])
    with run.rng.active():
        generator = build_generator(config, image_shape).to(torch_device)
        critic = build_critic(config, image_shape).to(torch_device)
        betas = (config.adam_beta1, config.adam_beta2)
        generator_opt = make_optimizer("adam", run.params("generator", generator, config.learning_rate),
                                       config.learning_rate, betas=betas)
        critic_opt = make_optimizer("adam", run.params("critic", critic, config.learning_rate), config.learning_rate,
                                    betas=betas)
        precision = Precision(config.precision, torch_device)
        step = run.start(modules={"generator": generator, "critic": critic},
                         optimizers={"generator": generator_opt, "critic": critic_opt})
        # Under DDP the generator step goes through DDP's generator and the *plain* critic: DDP's
        # critic would wait for critic gradients that the generator step (critic frozen) never makes.
        generator_fwd = maybe_compile(run.wrap(generator), config.compile)
        critic_fwd = maybe_compile(run.wrap(critic), config.compile)
        plain_critic_fwd = maybe_compile(critic, config.compile) if run.parallel.enabled else critic_fwd
        grid_latents = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
        grid_latents = grid_latents.to(torch_device)

        def evaluate() -> dict[str, float]:
            if not config.eval_samples:
                return {}
            latents = torch.randn(
                config.eval_samples, config.latent_dim, generator=torch.Generator().manual_seed(config.seed)
            )
            return sample_metrics(generate_images(generator, latents.to(torch_device)), config.data, data_dir,
                                  torch_device)

        with run.loop(step) as bar:
            while step < config.steps:
                step += 1
                # --- critic: n_critic steps on fresh data, z and interpolation points (Algorithm 1, lines 2-9)
                critic.requires_grad_(True)
                for _ in range(config.n_critic):
                    real = to_model_range(run.batches.next()[0], "symmetric")  # (B, C, H, W) in [-1, 1]
                    z = torch.randn(real.shape[0], config.latent_dim, device=torch_device)
                    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=torch_device)
                    real, z, eps = run.shard(real, z, eps)  # this rank's rows of the global batch
                    with torch.no_grad(), precision.autocast():
                        fake = generator_fwd(z)
                    x_hat = interpolate(real, fake, eps)
                    with precision.autocast():
                        # One DDP pass scores real and fake; the penalty's pass goes through the plain
                        # critic (its gradients join the same .grad before DDP's all-reduce). DDP's reducer
                        # wants one forward per backward: three DDP passes give wrong critic gradients
                        # (tests/test_distributed.py shows it).
                        score_real, score_fake = critic_fwd(torch.cat([real, fake])).float().split(real.shape[0])
                        penalty = gradient_penalty(plain_critic_fwd(x_hat).float(), x_hat, config.gp_lambda)
                    critic_real, critic_fake = score_real.mean(), score_fake.mean()
                    critic_loss = critic_fake - critic_real + penalty
                    gradient_step(critic_loss, critic_opt, critic.parameters())
                # --- generator: one step against the updated critic (lines 10-11)
                critic.requires_grad_(False)  # no critic gradients needed; saves their compute
                (z,) = run.shard(torch.randn(config.batch_size, config.latent_dim, device=torch_device))
                with precision.autocast():
                    generator_loss = -plain_critic_fwd(generator_fwd(z)).float().mean()
                gradient_step(generator_loss, generator_opt, generator.parameters())
                # The critic terms logged are those of each window's last critic step.
                run.window.add(critic_loss, penalty, critic_real - critic_fake, generator_loss)

                run.log_window(step, bar, w="charts/wasserstein_estimate", gp="losses/gradient_penalty")
                with run.window.paused():
                    if run.is_main and config.sample_interval and step % config.sample_interval == 0:
                        run.logger.image_grid("samples/generator", generate_images(generator, grid_latents), step)
                    if run.is_main and config.eval_interval and step % config.eval_interval == 0 and step < config.steps:
                        run.record(evaluate(), step)
                run.maybe_checkpoint(step)
                bar.update(1)
                if run.stop_requested:
                    break
        critic.requires_grad_(True)
        return run.finish(
            step,
            final_images=lambda: ("samples/generator", generate_images(generator, grid_latents)),
            final_eval=evaluate,
        )
