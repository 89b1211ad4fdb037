"""WGAN-GP training loop, top to bottom, as the paper's Algorithm 1 (Gulrajani et al., 2017).

Each generator iteration follows ``n_critic`` critic iterations; each critic
iteration draws fresh real images, fresh z and fresh interpolation points.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from rlgen.data import batches, load_dataset, to_model_range
from rlgen.generative.runs import (
    CHECKPOINT_NAME,
    TrainResult,
    checkpoint_meta,
    dataset_meta,
    make_logger,
    open_run,
    record_scalars,
    run_directory,
    sample_metrics,
)
from rlgen.generative.wgan_gp.config import WGANGPConfig
from rlgen.generative.wgan_gp.losses import gradient_penalty
from rlgen.generative.wgan_gp.sample import (
    ALGO,
    build_critic,
    build_generator,
    generate_images,
)
from rlgen.training import (
    GracefulInterrupt,
    Precision,
    ProgressBar,
    gradient_step,
    make_optimizer,
    maybe_compile,
    resolve_device,
    save_checkpoint,
    seed_everything,
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
) -> TrainResult:
    """Train a WGAN-GP; writes TensorBoard logs and ``checkpoint.safetensors`` into a new (or the resumed) run dir."""
    torch_device = resolve_device(device)
    seed_everything(config.seed)
    train_set = load_dataset(
        config.data, "train", data_dir=data_dir, download=download, image_size=config.image_size or None
    )
    data = dataset_meta(train_set)
    image_shape = tuple(data["image_shape"])

    generator = build_generator(config, image_shape).to(torch_device)
    critic = build_critic(config, image_shape).to(torch_device)
    betas = (config.adam_beta1, config.adam_beta2)
    generator_opt = make_optimizer("adam", generator.parameters(), config.learning_rate, betas=betas)
    critic_opt = make_optimizer("adam", critic.parameters(), config.learning_rate, betas=betas)
    precision = Precision(config.precision, torch_device)
    data_rng = torch.Generator().manual_seed(config.seed)
    start_step = 0
    resume_dir = run_directory(resume) if resume is not None else None
    if resume_dir is not None:
        checkpoint = open_run(resume_dir, ALGO)
        checkpoint.load_module("generator", generator)
        checkpoint.load_module("critic", critic)
        checkpoint.load_optimizer("generator", generator_opt)
        checkpoint.load_optimizer("critic", critic_opt)
        checkpoint.restore_rng()
        data_rng.set_state(checkpoint.tensors["extra/data_rng"])
        start_step = int(checkpoint.meta["step"])
    generator_fwd = maybe_compile(generator, config.compile)
    critic_fwd = maybe_compile(critic, config.compile)
    logger = make_logger(logdir, ALGO, config, resume_dir)
    batch_iter = batches(train_set, config.batch_size, data_rng, torch_device)
    grid_latents = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
    grid_latents = grid_latents.to(torch_device)

    def save(step: int) -> None:
        save_checkpoint(
            logger.run_dir / CHECKPOINT_NAME,
            modules={"generator": generator, "critic": critic},
            optimizers={"generator": generator_opt, "critic": critic_opt},
            extra_tensors={"data_rng": data_rng.get_state()},
            meta=checkpoint_meta(ALGO, step, config, data),
        )

    history: dict[str, list[float]] = {}
    metrics: dict[str, float] = {}
    step = start_step
    interrupted = False
    # Running sums between logs of (critic loss, gradient penalty, W estimate, generator loss).
    sums = torch.zeros(4, device=torch_device)
    window_start, window_steps = time.perf_counter(), 0
    hide_bar = None if progress is None else not progress  # None: shown on terminals only
    with GracefulInterrupt() as interrupt, ProgressBar(config.steps, desc=ALGO, disable=hide_bar) as bar:
        bar.update(start_step)
        while step < config.steps:
            step += 1
            # --- critic: n_critic steps on fresh data, z and interpolation points (Algorithm 1, lines 2-9)
            critic.requires_grad_(True)
            for _ in range(config.n_critic):
                real = to_model_range(next(batch_iter)[0], "symmetric")  # (B, C, H, W) in [-1, 1]
                z = torch.randn(real.shape[0], config.latent_dim, device=torch_device)
                with torch.no_grad(), precision.autocast():
                    fake = generator_fwd(z)
                with precision.autocast():
                    critic_real = critic_fwd(real).float().mean()
                    critic_fake = critic_fwd(fake).float().mean()
                    penalty = gradient_penalty(critic_fwd, real, fake, config.gp_lambda)
                critic_loss = critic_fake - critic_real + penalty
                gradient_step(critic_loss, critic_opt, critic.parameters())
            # --- generator: one step against the updated critic (lines 10-11)
            critic.requires_grad_(False)  # no critic gradients needed; saves their compute
            z = torch.randn(config.batch_size, config.latent_dim, device=torch_device)
            with precision.autocast():
                generator_loss = -critic_fwd(generator_fwd(z)).float().mean()
            gradient_step(generator_loss, generator_opt, generator.parameters())
            sums += torch.stack([critic_loss, penalty, critic_real - critic_fake, generator_loss]).detach()
            window_steps += 1

            if step % config.log_interval == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                means = sums / window_steps  # the critic terms are those of each window's last critic step
                values = record_scalars(
                    logger,
                    history,
                    {
                        "losses/critic": means[0],
                        "losses/gradient_penalty": means[1],
                        "charts/wasserstein_estimate": means[2],
                        "losses/generator": means[3],
                        "charts/images_per_second": window_steps * config.batch_size * (config.n_critic + 1) / elapsed,
                    },
                    step,
                )
                bar.update(0, w=values["charts/wasserstein_estimate"], gp=values["losses/gradient_penalty"])
                sums.zero_()
                window_start, window_steps = time.perf_counter(), 0
            extras_start = time.perf_counter()
            if config.sample_interval and step % config.sample_interval == 0:
                logger.image_grid("samples/generator", generate_images(generator, grid_latents), step)
            if config.eval_samples and (
                (config.eval_interval and step % config.eval_interval == 0) or step == config.steps
            ):
                latents = torch.randn(
                    config.eval_samples, config.latent_dim, generator=torch.Generator().manual_seed(config.seed)
                )
                samples = generate_images(generator, latents.to(torch_device))
                metrics = sample_metrics(samples, config.data, data_dir, torch_device)
                record_scalars(logger, history, metrics, step)
            if config.checkpoint_interval and step % config.checkpoint_interval == 0:
                save(step)
            window_start += time.perf_counter() - extras_start  # keep samples, eval and saving out of images/s
            bar.update(1)
            if interrupt.requested:
                interrupted = True
                break
    critic.requires_grad_(True)
    save(step)
    logger.image_grid("samples/generator", generate_images(generator, grid_latents), step)
    logger.hparams_final(metrics)
    logger.close()
    return TrainResult(logger.run_dir, step, history, metrics, interrupted)
