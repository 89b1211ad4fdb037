"""Diffusion training loop, top to bottom: noise images (or, with ``vae_run``, their VAE latents) with
diffusers' DDPMScheduler, regress the noise.

The EMA weights are the ones sampled from; the training scheduler's config is
saved beside the checkpoint (``scheduler_config.json``), and a UNet denoiser is
also saved as a diffusers pipeline (``model_index.json``, ``unet/``, ``scheduler/``)
so that ``DDPMPipeline.from_pretrained(run_dir)`` samples it as well.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline

from rlgen.data import to_model_range
from rlgen.errors import InputError
from rlgen.generative.diffusion.config import DiffusionConfig
from rlgen.generative.diffusion.latent import codec_from_meta, codec_from_vae_run
from rlgen.generative.diffusion.networks import UNetDenoiser, build_denoiser
from rlgen.generative.diffusion.sample import (
    ALGO,
    make_scheduler,
    sample,
    training_scheduler,
    training_target,
)
from rlgen.generative.plumbing import GenerativeRun
from rlgen.generative.runs import sample_metrics
from rlgen.training import (
    EMA,
    Precision,
    TrainResult,
    gradient_step,
    make_lr_schedule,
    make_optimizer,
    maybe_compile,
)

log = logging.getLogger(__name__)


def warmup_steps(config: DiffusionConfig) -> int:
    """The preset's warmup, or a tenth of a run shorter than it (a shortened run should still work)."""
    if config.warmup_steps <= config.steps:
        return config.warmup_steps
    short = config.steps // 10
    log.warning(f"warmup_steps={config.warmup_steps} is longer than the run (steps={config.steps}); "
                f"warming the learning rate up over {short} steps (a tenth of the run) instead")
    return short


def train(
    config: DiffusionConfig,
    *,
    logdir: str | Path = "runs",
    device: str = "auto",
    data_dir: str | None = None,
    download: bool = False,
    resume: str | Path | None = None,
    progress: bool | None = None,
    on_eval=None,
) -> TrainResult:
    """Train a denoiser; writes TensorBoard logs, checkpoints and the scheduler config."""
    if config.denoiser == "mlp" and not config.vae_run:
        raise InputError("denoiser=mlp works on a VAE's latent vectors (latent diffusion): pass --set vae_run=RUN_DIR "
                         "(a trained `rlgen train vae` run)")
    run = GenerativeRun(ALGO, config, window=("losses/diffusion",), images_per_step=config.batch_size,
                        logdir=logdir, device=device, data_dir=data_dir, download=download, resume=resume,
                        progress=progress, on_eval=on_eval)
    torch_device = run.device
    image_shape = tuple(run.data["image_shape"])
    num_classes = run.data["num_classes"] if config.class_conditional else 0
    if config.class_conditional and num_classes < 2:
        raise InputError(f"class_conditional=true needs a labelled dataset; {config.data!r} has no classes")

    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    with run.rng.active():
        # Latent diffusion: the VAE's codec (its weights copied into this run), and samples of the latent shape.
        codec, sample_shape, codec_meta = None, image_shape, {}
        if config.vae_run:
            if run.checkpoint is None:
                codec = codec_from_vae_run(config.vae_run, run.data, config.data)
                codec.fit_scale(to_model_range(run.train_set.images[:2048], "unit"))
            else:
                codec = codec_from_meta(run.checkpoint.meta["codec"])  # its weights come with run.start
            codec, sample_shape, codec_meta = codec.to(torch_device), codec.latent_shape, {"codec": codec.meta()}
        denoiser = build_denoiser(config, sample_shape, num_classes).to(torch_device, memory_format=memory_format)
        params = run.params("denoiser", denoiser, config.learning_rate)  # before the EMA copies the weights
        ema = EMA(denoiser, decay=config.ema_decay)
        optimizer = make_optimizer(
            "adamw",
            params,
            config.learning_rate,
            weight_decay=config.weight_decay,
            betas=(0.9, config.adam_beta2),
        )
        lr_schedule = make_lr_schedule(
            optimizer, config.lr_schedule, total_steps=config.steps, warmup_steps=warmup_steps(config)
        )
        scheduler = training_scheduler(config)
        precision = Precision(config.precision, torch_device)
        step = run.start(modules={"denoiser": denoiser, "ema": ema, **({"codec": codec} if codec else {})},
                         optimizers={"denoiser": optimizer}, schedules={"lr": lr_schedule})
        forward = maybe_compile(run.wrap(denoiser), config.compile)
        if run.is_main:
            scheduler.save_config(run.logger.run_dir)

        def save_pipeline() -> None:
            if run.is_main and isinstance(ema.shadow, UNetDenoiser) and not num_classes:
                # diffusers' own pipelines call unet(sample, t) without labels, so only unconditional nets.
                DDPMPipeline(unet=ema.shadow.unet, scheduler=scheduler).save_pretrained(run.logger.run_dir)

        def generate(num_images: int) -> tuple[torch.Tensor, torch.Tensor | None]:
            """EMA samples in [0, 1] (labels cycling through the classes when conditional), and the labels."""
            sampler = make_scheduler(config.sample_scheduler, scheduler.config)
            labels = torch.arange(num_images) % num_classes if num_classes else None
            images = sample(
                ema.shadow, sampler, num_images, sample_shape, config.sample_steps,
                torch.Generator().manual_seed(config.seed), torch_device,
                class_labels=labels, guidance_scale=config.guidance_scale,
                decode=codec.decode if codec is not None else None,
            )  # fmt: skip
            return (images + 1.0) / 2.0, labels

        def evaluate() -> dict[str, float]:
            if not config.eval_samples:
                return {}
            samples, sample_labels = generate(config.eval_samples)
            return sample_metrics(samples, config.data, data_dir, torch_device, sample_labels)

        with run.loop(step) as bar:
            while step < config.steps:
                step += 1
                images, labels = run.batches.next()
                if codec is not None:
                    x0 = codec.encode(to_model_range(images, "unit"))  # (B, Z) scaled latents
                else:
                    x0 = to_model_range(images, "symmetric").contiguous(memory_format=memory_format)  # (B, C, H, W)
                noise = torch.randn_like(x0)
                timesteps = torch.randint(0, config.num_train_timesteps, (x0.shape[0],), device=torch_device)
                class_labels = None
                if num_classes:
                    # Drop labels to the null class so the same net learns the unconditional model too.
                    drop = torch.rand(labels.shape, device=torch_device) < config.label_dropout
                    class_labels = torch.where(drop, torch.full_like(labels, num_classes), labels)
                    (class_labels,) = run.shard(class_labels)
                x0, noise, timesteps = run.shard(x0, noise, timesteps)  # this rank's rows of the global batch
                noisy = scheduler.add_noise(x0, noise, timesteps)  # x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps
                target = training_target(scheduler, x0, noise, timesteps, config.prediction_type)
                with precision.autocast(), run.rank_randomness(step):  # dropout: per rank under DDP
                    prediction = forward(noisy, timesteps, class_labels)
                loss = F.mse_loss(prediction.float(), target)
                gradient_step(loss, optimizer, denoiser.parameters(), config.max_grad_norm or None, precision.scaler)
                lr_schedule.step()
                ema.update(denoiser)
                run.window.add(loss)

                run.log_window(step, bar, extra={"charts/learning_rate": optimizer.param_groups[0]["lr"]},
                               loss="losses/diffusion")
                with run.window.paused():
                    if run.is_main and config.sample_interval and step % config.sample_interval == 0:
                        run.logger.image_grid("samples/ema", generate(64)[0], step)
                    if run.is_main and config.eval_interval and step % config.eval_interval == 0 and step < config.steps:
                        run.record(evaluate(), step)
                    if config.checkpoint_interval and step % config.checkpoint_interval == 0:
                        save_pipeline()
                run.maybe_checkpoint(step, **codec_meta)
                bar.update(1)
                if run.stop_requested:
                    break
        save_pipeline()
        return run.finish(step, final_images=lambda: ("samples/ema", generate(64)[0]), final_eval=evaluate,
                          **codec_meta)
