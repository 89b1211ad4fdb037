"""Training and sampling speed of rlgen's generative models beside plain PyTorch loops of the same models.

For each model it runs, in one process and on the same data already on the device:

- ``rlgen``: the model's own ``train()`` (the loop ``rlgen train`` runs), timed from
  its ``charts/images_per_second`` log windows after the first (warm-up) window;
- ``plain``: a plain PyTorch loop of the same network and objective, written the way
  diffusers' ``examples/unconditional_image_generation/train_unconditional.py`` writes
  it (AdamW, ``get_cosine_schedule_with_warmup``, gradient clipping, ``EMAModel``;
  for VAE and WGAN-GP the textbook loop with Adam), timed over the same steps.

Then it times sampling ``--sample-count`` images from the trained model: for diffusion,
each scheduler and step count (``--schedulers``, ``--sample-steps``); for VAE and GAN,
one decoder pass.

Example (CPU, small settings; see docs/benchmarks.md):
    python scripts/bench_generative.py --data digits --steps 60
On a GPU, compare the modes, e.g.:
    python scripts/bench_generative.py --model diffusion --data fashion-mnist \
        --preset fashion-mnist-unet17m --steps 300 --batch-size 256 --set precision=bf16 --set channels_last=true
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rlgen.generative.configs import make_config
from rlgen.data import load_dataset, to_model_range
from rlgen.generative.diffusion.sample import load as load_diffusion
from rlgen.generative.diffusion.sample import make_scheduler, sample
from rlgen.generative.sampling import generate
from rlgen.training import resolve_device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loop(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per step of ``step`` over ``steps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def random_batches(images: torch.Tensor, batch_size: int, kind: str) -> Callable[[], torch.Tensor]:
    """Batches drawn from uint8 images already on the device, converted there (as rlgen's loader does)."""

    def draw() -> torch.Tensor:
        idx = torch.randint(0, images.shape[0], (batch_size,), device=images.device)
        return to_model_range(images[idx], kind)

    return draw


# ----------------------------------------------------------------------------- plain reference loops


def plain_vae(config, images: torch.Tensor, device: torch.device) -> Callable[[], None]:
    from rlgen.generative.vae.networks import VAE

    model = VAE(config, tuple(images.shape[1:])).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    draw = random_batches(images, config.batch_size, "unit")

    def step() -> None:
        x = draw()
        logits, mu, logvar = model(x)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / x.shape[0]
        loss = recon + config.beta * kl
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def plain_gan(config, images: torch.Tensor, device: torch.device) -> Callable[[], None]:
    from rlgen.generative.wgan_gp.networks import Critic, Generator

    shape = tuple(images.shape[1:])
    generator = Generator(config.latent_dim, shape, config.generator_channels).to(device)
    critic = Critic(shape, config.critic_channels, config.critic_norm).to(device)
    betas = (config.adam_beta1, config.adam_beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.learning_rate, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.learning_rate, betas=betas)
    draw = random_batches(images, config.batch_size, "symmetric")

    def step() -> None:
        for _ in range(config.n_critic):
            real = draw()
            fake = generator(torch.randn(real.shape[0], config.latent_dim, device=device)).detach()
            eps = torch.rand(real.shape[0], 1, 1, 1, device=device)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
            gp = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
            loss_d = critic(fake).mean() - critic(real).mean() + config.gp_lambda * gp
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        loss_g = -critic(generator(torch.randn(config.batch_size, config.latent_dim, device=device))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    return step


def plain_diffusion(config, images: torch.Tensor, device: torch.device) -> Callable[[], None]:
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    from rlgen.generative.diffusion.networks import build_denoiser

    model = build_denoiser(config, tuple(images.shape[1:])).unet.to(device)  # the bare UNet2DModel
    noise_scheduler = DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, betas=(0.9, config.adam_beta2), weight_decay=config.weight_decay
    )
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    ema = EMAModel(model.parameters(), decay=config.ema_decay, use_ema_warmup=True)
    draw = random_batches(images, config.batch_size, "symmetric")

    def step() -> None:
        clean = draw()
        noise = torch.randn(clean.shape, device=device)
        timesteps = torch.randint(0, config.num_train_timesteps, (clean.shape[0],), device=device).long()
        noisy = noise_scheduler.add_noise(clean, noise, timesteps)
        pred = model(noisy, timesteps).sample
        loss = F.mse_loss(pred.float(), noise.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        ema.step(model.parameters())

    return step


PLAIN = {"vae": plain_vae, "gan": plain_gan, "diffusion": plain_diffusion}


def train_fn(model: str):
    from rlgen.generative.configs import model_parts

    return model_parts(model)[1]


# ----------------------------------------------------------------------------- main


def bench_model(model: str, args: argparse.Namespace, device: torch.device) -> None:
    overrides = list(args.set) + ["eval_samples=0", "sample_interval=0", "checkpoint_interval=0"]
    config = make_config(model, args.data, args.preset, None, overrides, steps=args.steps, batch_size=args.batch_size)
    windows = 4
    config.log_interval = max(1, config.steps // windows)
    if model == "diffusion":
        config.warmup_steps = min(config.warmup_steps, config.steps)
    images = load_dataset(config.data, "train", data_dir=args.data_dir, image_size=config.image_size or None)
    images = images.images.to(device)
    per_step = config.batch_size * ((config.n_critic + 1) if model == "gan" else 1)  # images through a net per step

    with tempfile.TemporaryDirectory() as logdir:
        torch.manual_seed(0)
        result = train_fn(model)(config, logdir=logdir, device=str(device), data_dir=args.data_dir, progress=False)
        ours = statistics.median(result.history["charts/images_per_second"][1:])  # after the warm-up window
        torch.manual_seed(0)
        step = PLAIN[model](config, images, device)
        seconds = time_loop(step, steps=config.steps - config.log_interval, warmup=config.log_interval, device=device)
        plain = per_step / seconds
        print(
            f"{model:9s} train  rlgen {ours:9.1f} img/s   plain {plain:9.1f} img/s   ratio {ours / plain:5.2f}"
            f"   ({config.steps} steps of {config.batch_size}, {config.precision}, {device})"
        )
        time_sampling(model, result.run_dir, args, device)


def time_sampling(model: str, run_dir, args: argparse.Namespace, device: torch.device) -> None:
    n = args.sample_count
    if model != "diffusion":
        generate(model, run_dir, num_images=8, device=device)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        generate(model, run_dir, num_images=n, device=device)
        synchronize(device)
        seconds = time.perf_counter() - start
        print(f"{model:9s} sample {n} images: {seconds:7.2f} s ({n / seconds:9.1f} img/s)")
        return
    denoiser, config, meta, scheduler_config = load_diffusion(run_dir, device)
    shape = tuple(meta["data"]["image_shape"])
    for name in args.schedulers.split(","):
        for steps in (int(s) for s in args.sample_steps.split(",")):
            scheduler = make_scheduler(name, scheduler_config)
            generator = torch.Generator().manual_seed(0)
            sample(denoiser, scheduler, 2, shape, 2, generator, device)  # warm-up
            synchronize(device)
            start = time.perf_counter()
            sample(denoiser, scheduler, n, shape, steps, generator, device, batch_size=args.sample_batch)
            synchronize(device)
            seconds = time.perf_counter() - start
            print(
                f"diffusion sample {n} images: {name:13s} {steps:4d} steps {seconds:8.2f} s ({n / seconds:8.1f} img/s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all", choices=["all", "vae", "gan", "diffusion"])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--preset", default=None, help="Preset of agents/<model>.yml (default: named after --data).")
    parser.add_argument("--steps", type=int, default=200, help="Training steps per loop.")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Config override.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    parser.add_argument("--sample-count", type=int, default=1000)
    parser.add_argument("--sample-batch", type=int, default=500)
    parser.add_argument("--schedulers", default="ddpm,ddim,dpm-solver++")
    parser.add_argument("--sample-steps", default="10,25,50")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    for model in ["vae", "gan", "diffusion"] if args.model == "all" else [args.model]:
        bench_model(model, args, device)


if __name__ == "__main__":
    main()
