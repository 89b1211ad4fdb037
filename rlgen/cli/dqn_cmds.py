"""``rlgen train-dqn``, ``rlgen train-pqn``, ``rlgen eval`` and ``rlgen enjoy``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from rlgen.cli.common import (
    INTERRUPTED_EXIT,
    refuse_on_resume,
    refuse_torchrun,
    training_options,
    user_errors,
)
from rlgen.errors import InputError


def q_learning_command(algo: str, summary: str) -> click.Command:
    """``rlgen train-dqn`` / ``rlgen train-pqn``: the same options, presets from ``agents/<algo>.yml``."""

    @click.command(f"train-{algo}", help=summary)
    @click.argument("env_id")
    @click.option("--preset", default=None, help=f"Preset name from agents/{algo}.yml (default: the one named ENV_ID).")
    @click.option("--total-steps", type=int, default=None, help="Environment steps (overrides the preset).")
    @click.option("--num-envs", type=int, default=None, help="Environment copies stepped together.")
    @click.option("--resume", type=click.Path(), default=None, help="Continue a run from its directory or checkpoint.")
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @training_options
    @user_errors
    def command(env_id, preset, total_steps, num_envs, resume, quiet, seed, device, logdir, overrides, config_file,
                seeds):
        from rlgen.dqn import make_config
        from rlgen.dqn.agent import train_function
        from rlgen.dqn.resume import algo_of, read_header
        from rlgen.training import resume_location

        refuse_torchrun(f"train-{algo}", "run it without torchrun, and use --seeds N for many agents in one process")
        if seeds is not None and seeds < 1:
            raise InputError(f"--seeds {seeds} must be >= 1 (the number of seeds to train side by side)")
        if resume is not None:
            # The checkpoint's own config wins; the command line may only extend the run.
            refuse_on_resume({"--preset": preset, "--seed": seed, "--num-envs": num_envs, "--set": overrides,
                              "--config": config_file, "--seeds": seeds},
                             allowed="--total-steps, --device, --logdir, --quiet")
            from rlgen.dqn.group import is_group

            if is_group(resume):
                return train_group(algo, env_id, resume, total_steps, device, logdir, quiet)
            config = read_header(resume_location(resume)[0]).config
            if algo_of(config) != algo:
                raise InputError(f"--resume {resume} is a {algo_of(config)} run; resume it with: "
                                 f"rlgen train-{algo_of(config)} {config.env_id} --resume {resume}")
            if config.env_id != env_id:
                raise InputError(f"--resume {resume} is a run of {config.env_id}, not {env_id}; "
                                 f"resume it with: rlgen train-{algo} {config.env_id} --resume {resume}")
            if total_steps is not None:
                config = dataclasses.replace(config, total_timesteps=total_steps)
        else:
            config = make_config(
                env_id, preset, config_file=config_file, overrides=list(overrides), algo=algo,
                seed=seed, total_timesteps=total_steps, num_envs=num_envs,
            )
        if seeds is not None and seeds > 1:
            return train_group(algo, env_id, None, None, device, logdir, quiet,
                               [dataclasses.replace(config, seed=config.seed + i) for i in range(seeds)])
        result = train_function(config)(config, device=device, logdir=logdir, resume=resume, progress=not quiet)
        click.echo(f"run: {result.run_dir}")
        if result.interrupted:
            click.echo(f"interrupted at step {result.global_step:,}: checkpoint saved to {result.checkpoint}")
            click.echo(f"resume with: rlgen train-{algo} {env_id} --resume {result.run_dir}")
            raise SystemExit(INTERRUPTED_EXIT)
        click.echo(f"checkpoint: {result.checkpoint}")
        click.echo(f"trained {result.global_step:,} steps in {result.wall_seconds:.1f} s")
        if result.eval_mean is not None:
            click.echo(
                f"eval over {config.eval_episodes} episodes: {result.eval_mean:.2f} +/- {result.eval_std:.2f}"
            )

    return click.option(
        "--seeds", type=int, default=None,
        help="Train this many seeds (--seed, --seed + 1, ...) side by side in one batched computation; "
             "one run directory per seed and a summary (mean, IQM with a bootstrap CI).")(command)


def train_group(algo: str, env_id: str, resume, total_steps, device, logdir, quiet, configs=None) -> None:
    """``--seeds N`` (or ``--resume GROUP_DIR``): train the seeds as one batch and print their summary."""
    from rlgen.dqn.resume import read_header
    from rlgen.dqn.group import read_group
    from rlgen.dqn.resume import algo_of
    from rlgen.training import resume_location

    if algo == "dqn":
        from rlgen.dqn.seeds import train_seeds
    else:
        from rlgen.pqn.seeds import train_seeds

    if resume is not None:
        info = read_group(resume)
        configs = [read_header(resume_location(Path(resume) / name)[0]).config for name in info["runs"]]
        if algo_of(configs[0]) != algo:
            raise InputError(f"--resume {resume} is a group of {algo_of(configs[0])} runs; resume it with: "
                             f"rlgen train-{algo_of(configs[0])} {configs[0].env_id} --resume {resume}")
        if configs[0].env_id != env_id:
            raise InputError(f"--resume {resume} is a group of {configs[0].env_id}, not {env_id}; resume it with: "
                             f"rlgen train-{algo} {configs[0].env_id} --resume {resume}")
        if total_steps is not None:
            configs = [dataclasses.replace(c, total_timesteps=total_steps) for c in configs]
    result = train_seeds(configs, device=device, logdir=logdir, resume=resume, progress=not quiet)
    click.echo(f"group: {result.group_dir}")
    for run in result.runs:
        score = f", eval {run.eval_mean:.2f} +/- {run.eval_std:.2f}" if run.eval_mean is not None else ""
        click.echo(f"  {run.run_dir.name}: {run.global_step:,} steps{score}")
    if result.interrupted:
        click.echo(f"interrupted at step {result.runs[0].global_step:,}: every seed saved its checkpoint")
        click.echo(f"resume with: rlgen train-{algo} {env_id} --resume {result.group_dir}")
        raise SystemExit(INTERRUPTED_EXIT)
    click.echo(f"trained {len(result.runs)} seeds x {result.runs[0].global_step:,} steps in {result.wall_seconds:.1f} s")
    if result.summary is not None:
        for line in result.summary.lines():
            click.echo(line)


train_dqn = q_learning_command(
    "dqn", "Train a DQN agent on ENV_ID (e.g. CartPole-v1, MinAtar/Breakout-v1, ALE/Pong-v5).")
train_pqn = q_learning_command(
    "pqn", "Train a PQN agent (parallel Q-learning: many envs, Q(lambda), LayerNorm, no replay) on ENV_ID.")


@click.command("eval")
@click.argument("run", type=click.Path(), required=False)
@click.option("--episodes", type=int, default=100, show_default=True, help="Episodes to average over.")
@click.option("--epsilon", type=float, default=0.0, show_default=True, help="Random-action rate (0 = greedy).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--onnx", "onnx_file", type=click.Path(dir_okay=False), default=None,
              help="Evaluate an exported policy (rlgen export) with onnxruntime instead of a run.")
@click.option("--env", "env_id", default=None, help="With --onnx: the environment (default: the one it was trained on).")
@user_errors
def eval_cmd(run, episodes, epsilon, seed, device, onnx_file, env_id):
    """Evaluate a trained agent (RUN: a run directory or a checkpoint file), or an exported one (--onnx FILE).

    \b
    Examples:
      rlgen eval runs/CartPole-v1__dqn__0__1700000000 --episodes 100
      rlgen eval --onnx runs/CartPole-v1__dqn__0__1700000000/q_policy.onnx
    """
    if onnx_file is not None:
        if run is not None:
            raise InputError("give either RUN or --onnx FILE, not both")
        from rlgen.export.runtime import evaluate_onnx

        env_id, mean, std = evaluate_onnx(onnx_file, episodes, env_id=env_id, seed=seed, epsilon=epsilon)
        click.echo(f"{env_id}: mean return {mean:.2f} +/- {std:.2f} over {episodes} episodes (onnxruntime)")
        return
    if run is None:
        raise InputError("rlgen eval needs RUN (a run directory or checkpoint) or --onnx FILE")
    if env_id is not None:
        raise InputError("--env applies to --onnx; a run evaluates on the environment it was trained on")
    from rlgen.dqn import DQNAgent
    from rlgen.dqn.group import is_group, read_group

    if is_group(run):  # every seed of a `--seeds N` group, and the group's summary
        from rlgen.envs import get_spec
        from rlgen.stats import GroupSummary

        info, returns, seeds = read_group(run), [], []
        for name in info["runs"]:
            agent = DQNAgent.load(Path(run) / name, device=device)
            mean, std = agent.evaluate(episodes, seed=seed, epsilon=epsilon)
            click.echo(f"  {name}: mean return {mean:.2f} +/- {std:.2f} over {episodes} episodes")
            returns.append(mean)
            seeds.append(agent.config.seed)
        env = agent.config.env_id
        for line in GroupSummary.of(env, seeds, returns, get_spec(env).solved_threshold).lines():
            click.echo(line)
        return

    agent = DQNAgent.load(run, device=device)
    mean, std = agent.evaluate(episodes, seed=seed, epsilon=epsilon)
    click.echo(f"{agent.config.env_id}: mean return {mean:.2f} +/- {std:.2f} over {episodes} episodes")


@click.command("enjoy")
@click.argument("run", type=click.Path())
@click.option("--video", type=click.Path(dir_okay=False), default=None, help="Record to out.mp4 or out.gif.")
@click.option("--episodes", type=int, default=1, show_default=True)
@click.option("--fps", type=int, default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@user_errors
def enjoy(run, video, episodes, fps, seed, device):
    """Watch a trained agent play, or record its episodes with --video."""
    import numpy as np

    from rlgen.dqn import DQNAgent
    from rlgen.dqn.video import write_video

    agent = DQNAgent.load(run, device=device)
    if video is None:
        _watch(agent, episodes, seed)
        return
    clips, returns = [], []
    for i in range(episodes):
        frames, ret = agent.record_episode(seed=seed + i)
        clips.append(frames)
        returns.append(ret)
    path = write_video(np.concatenate(clips), video, fps=fps)
    click.echo(f"wrote {path} ({sum(len(c) for c in clips)} frames); returns: "
               + ", ".join(f"{r:.1f}" for r in returns))


def _watch(agent, episodes: int, seed: int) -> None:
    """Play in a window (gymnasium's human rendering, which needs pygame and a display)."""
    import os

    try:
        import pygame  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "watching in a window needs pygame (pip install pygame) and a display; "
            "record instead with --video out.mp4"
        ) from None
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise click.ClickException("no display found; record instead with --video out.mp4")
    from rlgen.envs import get_spec, make_env

    env = make_env(get_spec(agent.config.env_id), training=False, render_mode="human")
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        agent.reset()  # agents with memory start each episode afresh
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(agent.predict(obs)))
            total += float(reward)
            done = terminated or truncated
        click.echo(f"episode {i}: return {total:.1f}")
    env.close()


COMMANDS = [train_dqn, train_pqn, eval_cmd, enjoy]
