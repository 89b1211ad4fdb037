"""Diffusion training loop, top to bottom: noise images with diffusers' DDPMScheduler, regress the noise.

The EMA weights are the ones sampled from; the training scheduler's config is
saved beside the checkpoint (``scheduler_config.json``), and a UNet denoiser is
also saved as a diffusers pipeline (``model_index.json``, ``unet/``, ``scheduler/``)
so that ``DDPMPipeline.from_pretrained(run_dir)`` samples it as well.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline

from rlgen.data import batches, load_dataset, to_model_range
from rlgen.errors import InputError
from rlgen.generative.diffusion.config import DiffusionConfig
from rlgen.generative.diffusion.networks import UNetDenoiser, build_denoiser
from rlgen.generative.diffusion.sample import (
    ALGO,
    make_scheduler,
    sample,
    training_scheduler,
    training_target,
)
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
from rlgen.training import (
    EMA,
    GracefulInterrupt,
    Precision,
    ProgressBar,
    gradient_step,
    make_lr_schedule,
    make_optimizer,
    maybe_compile,
    resolve_device,
    save_checkpoint,
    seed_everything,
)


def train(
    config: DiffusionConfig,
    *,
    logdir: str | Path = "runs",
    device: str = "auto",
    data_dir: str | None = None,
    download: bool = False,
    resume: str | Path | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train a denoiser; writes TensorBoard logs, ``checkpoint.safetensors`` and the scheduler config."""
    torch_device = resolve_device(device)
    seed_everything(config.seed)
    train_set = load_dataset(
        config.data, "train", data_dir=data_dir, download=download, image_size=config.image_size or None
    )
    data = dataset_meta(train_set)
    image_shape = tuple(data["image_shape"])
    num_classes = data["num_classes"] if config.class_conditional else 0
    if config.class_conditional and num_classes < 2:
        raise InputError(f"class_conditional=true needs a labelled dataset; {config.data!r} has no classes")

    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    denoiser = build_denoiser(config, image_shape, num_classes).to(torch_device, memory_format=memory_format)
    ema = EMA(denoiser, decay=config.ema_decay)
    optimizer = make_optimizer(
        "adamw",
        denoiser.parameters(),
        config.learning_rate,
        weight_decay=config.weight_decay,
        betas=(0.9, config.adam_beta2),
    )
    lr_schedule = make_lr_schedule(
        optimizer, config.lr_schedule, total_steps=config.steps, warmup_steps=config.warmup_steps
    )
    scheduler = training_scheduler(config)
    precision = Precision(config.precision, torch_device)
    data_rng = torch.Generator().manual_seed(config.seed)
    start_step = 0
    resume_dir = run_directory(resume) if resume is not None else None
    if resume_dir is not None:
        checkpoint = open_run(resume_dir, ALGO)
        checkpoint.load_module("denoiser", denoiser)
        checkpoint.load_module("ema", ema)
        checkpoint.load_optimizer("denoiser", optimizer)
        lr_schedule.load_state_dict(checkpoint.meta["lr_schedule"])
        checkpoint.restore_rng()
        data_rng.set_state(checkpoint.tensors["extra/data_rng"])
        start_step = int(checkpoint.meta["step"])
    forward = maybe_compile(denoiser, config.compile)
    logger = make_logger(logdir, ALGO, config, resume_dir)
    scheduler.save_config(logger.run_dir)
    batch_iter = batches(train_set, config.batch_size, data_rng, torch_device)

    def save(step: int) -> None:
        save_checkpoint(
            logger.run_dir / CHECKPOINT_NAME,
            modules={"denoiser": denoiser, "ema": ema},
            optimizers={"denoiser": optimizer},
            extra_tensors={"data_rng": data_rng.get_state()},
            meta=checkpoint_meta(ALGO, step, config, data, lr_schedule=lr_schedule.state_dict()),
        )
        if isinstance(ema.shadow, UNetDenoiser) and not num_classes:
            # diffusers' own pipelines call unet(sample, t) without labels, so only unconditional nets.
            DDPMPipeline(unet=ema.shadow.unet, scheduler=scheduler).save_pretrained(logger.run_dir)

    def generate(num_images: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """EMA samples in [0, 1] (labels cycling through the classes when conditional), and the labels."""
        sampler = make_scheduler(config.sample_scheduler, scheduler.config)
        labels = torch.arange(num_images) % num_classes if num_classes else None
        images = sample(
            ema.shadow, sampler, num_images, image_shape, config.sample_steps,
            torch.Generator().manual_seed(config.seed), torch_device,
            class_labels=labels, guidance_scale=config.guidance_scale,
        )  # fmt: skip
        return (images + 1.0) / 2.0, labels

    history: dict[str, list[float]] = {}
    metrics: dict[str, float] = {}
    step = start_step
    interrupted = False
    loss_sum = torch.zeros((), device=torch_device)
    window_start, window_steps = time.perf_counter(), 0
    hide_bar = None if progress is None else not progress  # None: shown on terminals only
    with GracefulInterrupt() as interrupt, ProgressBar(config.steps, desc=ALGO, disable=hide_bar) as bar:
        bar.update(start_step)
        while step < config.steps:
            step += 1
            images, labels = next(batch_iter)
            x0 = to_model_range(images, "symmetric").contiguous(memory_format=memory_format)  # (B, C, H, W)
            noise = torch.randn_like(x0)
            timesteps = torch.randint(0, config.num_train_timesteps, (x0.shape[0],), device=torch_device)
            noisy = scheduler.add_noise(x0, noise, timesteps)  # x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps
            target = training_target(scheduler, x0, noise, timesteps, config.prediction_type)
            class_labels = None
            if num_classes:
                # Drop labels to the null class so the same net learns the unconditional model too.
                drop = torch.rand(labels.shape, device=torch_device) < config.label_dropout
                class_labels = torch.where(drop, torch.full_like(labels, num_classes), labels)
            with precision.autocast():
                prediction = forward(noisy, timesteps, class_labels)
            loss = F.mse_loss(prediction.float(), target)
            gradient_step(loss, optimizer, denoiser.parameters(), config.max_grad_norm or None, precision.scaler)
            lr_schedule.step()
            ema.update(denoiser)
            loss_sum += loss.detach()
            window_steps += 1

            if step % config.log_interval == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                values = record_scalars(
                    logger,
                    history,
                    {
                        "losses/diffusion": loss_sum / window_steps,
                        "charts/learning_rate": optimizer.param_groups[0]["lr"],
                        "charts/images_per_second": window_steps * config.batch_size / elapsed,
                    },
                    step,
                )
                bar.update(0, loss=values["losses/diffusion"])
                loss_sum.zero_()
                window_start, window_steps = time.perf_counter(), 0
            extras_start = time.perf_counter()
            if config.sample_interval and step % config.sample_interval == 0:
                logger.image_grid("samples/ema", generate(64)[0], step)
            if config.eval_samples and (
                (config.eval_interval and step % config.eval_interval == 0) or step == config.steps
            ):
                samples, sample_labels = generate(config.eval_samples)
                metrics = sample_metrics(samples, config.data, data_dir, torch_device, sample_labels)
                record_scalars(logger, history, metrics, step)
            if config.checkpoint_interval and step % config.checkpoint_interval == 0:
                save(step)
            window_start += time.perf_counter() - extras_start  # keep samples, eval and saving out of images/s
            bar.update(1)
            if interrupt.requested:
                interrupted = True
                break
    save(step)
    logger.image_grid("samples/ema", generate(64)[0], step)
    logger.hparams_final(metrics)
    logger.close()
    return TrainResult(logger.run_dir, step, history, metrics, interrupted)
