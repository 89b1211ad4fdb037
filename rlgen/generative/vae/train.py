"""VAE training loop, top to bottom: minimise -ELBO (recon + beta * KL) with Adam.

Reports the ELBO in nats per image on training batches (``losses/``) and, on test
images, the ELBO and an importance-sampled NLL estimate (``eval/``).
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
from rlgen.generative.vae.config import VAEConfig
from rlgen.generative.vae.losses import elbo, importance_sampled_nll
from rlgen.generative.vae.networks import VAE
from rlgen.generative.vae.sample import decode_images
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

ALGO = "vae"


@torch.no_grad()
def evaluate(model: VAE, config: VAEConfig, images: torch.Tensor, data_dir: str | None) -> dict[str, float]:
    """Test ELBO and importance-sampled NLL (nats per image) on ``images`` (N, C, H, W) uint8, and FID / KID."""
    model.eval()
    generator = torch.Generator().manual_seed(config.seed)
    elbos, nlls = [], []
    for chunk in images.split(250):
        x = to_model_range(chunk, "unit")
        if config.binarize:
            x = torch.bernoulli(x.cpu(), generator=generator).to(x.device)
        # Noise from our own generator, so that evaluating leaves the training RNG (and a resume) untouched.
        mu, logvar = model.encode(x)
        z = mu + torch.randn(mu.shape, generator=generator).to(mu.device) * torch.exp(0.5 * logvar)
        elbos.append(
            elbo(x, model.decode(z).float(), mu.float(), logvar.float(), config.likelihood, model.log_scale).elbo
        )
        nlls.append(
            importance_sampled_nll(
                x, model.encode, model.decode, config.likelihood, model.log_scale, config.nll_samples, generator
            )
        )
    metrics = {"eval/elbo": torch.cat(elbos).mean().item(), "eval/nll": torch.cat(nlls).mean().item()}
    if config.eval_samples:
        latents = torch.randn(config.eval_samples, config.latent_dim, generator=generator).to(images.device)
        samples = decode_images(model, latents, config.likelihood)
        metrics.update(sample_metrics(samples, config.data, data_dir, images.device))
    model.train()
    return metrics


def train(
    config: VAEConfig,
    *,
    logdir: str | Path = "runs",
    device: str = "auto",
    data_dir: str | None = None,
    download: bool = False,
    resume: str | Path | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train a VAE; writes TensorBoard logs and ``checkpoint.safetensors`` into a new (or the resumed) run dir."""
    torch_device = resolve_device(device)
    seed_everything(config.seed)
    image_size = config.image_size or None
    train_set = load_dataset(config.data, "train", data_dir=data_dir, download=download, image_size=image_size)
    test_images = load_dataset(config.data, "test", data_dir=data_dir, image_size=image_size).images
    test_images = test_images[: config.eval_images].to(torch_device)
    data = dataset_meta(train_set)

    model = VAE(config, tuple(data["image_shape"])).to(torch_device)
    optimizer = make_optimizer("adam", model.parameters(), config.learning_rate, weight_decay=config.weight_decay)
    precision = Precision(config.precision, torch_device)
    data_rng = torch.Generator().manual_seed(config.seed)
    start_step = 0
    resume_dir = run_directory(resume) if resume is not None else None
    if resume_dir is not None:
        checkpoint = open_run(resume_dir, ALGO)
        checkpoint.load_module(ALGO, model)
        checkpoint.load_optimizer(ALGO, optimizer)
        checkpoint.restore_rng()
        data_rng.set_state(checkpoint.tensors["extra/data_rng"])
        start_step = int(checkpoint.meta["step"])
    forward = maybe_compile(model, config.compile)
    logger = make_logger(logdir, ALGO, config, resume_dir)
    batch_iter = batches(train_set, config.batch_size, data_rng, torch_device)
    # Fixed latents, so successive sample grids show the same 64 points of z-space.
    grid_latents = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
    grid_latents = grid_latents.to(torch_device)

    def save(step: int) -> None:
        save_checkpoint(
            logger.run_dir / CHECKPOINT_NAME,
            modules={ALGO: model},
            optimizers={ALGO: optimizer},
            extra_tensors={"data_rng": data_rng.get_state()},
            meta=checkpoint_meta(ALGO, step, config, data),
        )

    history: dict[str, list[float]] = {}
    metrics: dict[str, float] = {}
    step = start_step
    interrupted = False
    sums = torch.zeros(3, device=torch_device)  # running sums of (-elbo, recon, kl) between logs
    window_start, window_steps = time.perf_counter(), 0
    hide_bar = None if progress is None else not progress  # None: shown on terminals only
    with GracefulInterrupt() as interrupt, ProgressBar(config.steps, desc=ALGO, disable=hide_bar) as bar:
        bar.update(start_step)
        while step < config.steps:
            step += 1
            images, _ = next(batch_iter)
            x = to_model_range(images, "unit")  # (B, C, H, W) in [0, 1]
            if config.binarize:
                x = torch.bernoulli(x)
            with precision.autocast():
                out, mu, logvar = forward(x)
            terms = elbo(x, out.float(), mu.float(), logvar.float(), config.likelihood, model.log_scale)
            loss = (terms.recon + config.beta * terms.kl).mean()
            gradient_step(loss, optimizer, model.parameters(), config.max_grad_norm or None, precision.scaler)
            sums += torch.stack([-terms.elbo.mean(), terms.recon.mean(), terms.kl.mean()]).detach()
            window_steps += 1

            if step % config.log_interval == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                means = sums / window_steps
                values = record_scalars(
                    logger,
                    history,
                    {
                        "losses/elbo": means[0],
                        "losses/recon": means[1],
                        "losses/kl": means[2],
                        "charts/images_per_second": window_steps * config.batch_size / elapsed,
                    },
                    step,
                )
                bar.update(0, neg_elbo=values["losses/elbo"], kl=values["losses/kl"])
                sums.zero_()
                window_start, window_steps = time.perf_counter(), 0
            extras_start = time.perf_counter()
            if config.sample_interval and step % config.sample_interval == 0:
                logger.image_grid("samples/prior", decode_images(model, grid_latents, config.likelihood), step)
            if (config.eval_interval and step % config.eval_interval == 0) or step == config.steps:
                metrics = evaluate(model, config, test_images, data_dir)
                record_scalars(logger, history, metrics, step)
            if config.checkpoint_interval and step % config.checkpoint_interval == 0:
                save(step)
            window_start += time.perf_counter() - extras_start  # keep samples, eval and saving out of images/s
            bar.update(1)
            if interrupt.requested:
                interrupted = True
                break
    save(step)
    logger.image_grid("samples/prior", decode_images(model, grid_latents, config.likelihood), step)
    logger.hparams_final(metrics)
    logger.close()
    return TrainResult(logger.run_dir, step, history, metrics, interrupted)
