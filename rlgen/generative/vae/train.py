"""VAE training loop, top to bottom: minimise -ELBO (recon + beta * KL) with Adam.

Reports the ELBO in nats per image on training batches (``losses/``) and, on test
images, the ELBO and an importance-sampled NLL estimate (``eval/``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlgen.data import load_dataset, to_model_range
from rlgen.generative.plumbing import GenerativeRun
from rlgen.generative.runs import sample_metrics
from rlgen.generative.vae.config import VAEConfig
from rlgen.generative.vae.losses import elbo, importance_sampled_nll
from rlgen.generative.vae.networks import VAE
from rlgen.generative.vae.sample import decode_images
from rlgen.training import (
    Precision,
    TrainResult,
    gradient_step,
    make_optimizer,
    maybe_compile,
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
    on_eval=None,
) -> TrainResult:
    """Train a VAE; writes TensorBoard logs and checkpoints into a new (or the resumed) run dir."""
    run = GenerativeRun(ALGO, config, window=("losses/elbo", "losses/recon", "losses/kl"),
                        images_per_step=config.batch_size, logdir=logdir, device=device, data_dir=data_dir,
                        download=download, resume=resume, progress=progress, on_eval=on_eval)
    torch_device = run.device
    test_images = load_dataset(config.data, "test", data_dir=data_dir, image_size=config.image_size or None).images
    test_images = test_images[: config.eval_images].to(torch_device)
    with run.rng.active():
        model = VAE(config, tuple(run.data["image_shape"])).to(torch_device)
        optimizer = make_optimizer("adam", run.params(ALGO, model, config.learning_rate), config.learning_rate,
                                   weight_decay=config.weight_decay)
        precision = Precision(config.precision, torch_device)
        step = run.start(modules={ALGO: model}, optimizers={ALGO: optimizer})
        forward = maybe_compile(run.wrap(model), config.compile)
        # Fixed latents, so successive sample grids show the same 64 points of z-space.
        grid_latents = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(config.seed))
        grid_latents = grid_latents.to(torch_device)

        with run.loop(step) as bar:
            while step < config.steps:
                step += 1
                images, _ = run.batches.next()
                x = to_model_range(images, "unit")  # (B, C, H, W) in [0, 1]
                if config.binarize:
                    x = torch.bernoulli(x)
                noise = torch.randn(x.shape[0], config.latent_dim, device=torch_device)  # (B, Z)
                x, noise = run.shard(x, noise)  # this rank's rows of the global batch
                with precision.autocast(), run.rank_randomness(step):  # dropout: per rank under DDP
                    out, mu, logvar = forward(x, noise)
                terms = elbo(x, out.float(), mu.float(), logvar.float(), config.likelihood, model.log_scale)
                loss = (terms.recon + config.beta * terms.kl).mean()
                gradient_step(loss, optimizer, model.parameters(), config.max_grad_norm or None, precision.scaler)
                run.window.add(-terms.elbo.mean(), terms.recon.mean(), terms.kl.mean())

                run.log_window(step, bar, neg_elbo="losses/elbo", kl="losses/kl")
                with run.window.paused():
                    if run.is_main and config.sample_interval and step % config.sample_interval == 0:
                        run.logger.image_grid("samples/prior", decode_images(model, grid_latents, config.likelihood), step)
                    if run.is_main and config.eval_interval and step % config.eval_interval == 0 and step < config.steps:
                        run.record(evaluate(model, config, test_images, data_dir), step)
                run.maybe_checkpoint(step)
                bar.update(1)
                if run.stop_requested:
                    break
        return run.finish(
            step,
            final_images=lambda: ("samples/prior", decode_images(model, grid_latents, config.likelihood)),
            final_eval=lambda: evaluate(model, config, test_images, data_dir),
        )
