"""``rlgen tune``: hyperparameter search on Optuna (see rlgen.tune.study)."""

from __future__ import annotations

import click

from rlgen.cli.common import INTERRUPTED_EXIT, refuse_torchrun, user_errors
from rlgen.errors import InputError


@click.command("tune")
@click.argument("algo", type=click.Choice(["dqn", "pqn", "vae", "gan", "diffusion"]))
@click.argument("env_id", required=False)
@click.option("--data", default=None, help="vae / gan / diffusion: the dataset (e.g. digits, fashion-mnist).")
@click.option("--n-trials", type=int, default=20, show_default=True, help="Finished trials the study should have.")
@click.option("--timeout", type=float, default=None, help="Stop starting trials after this many seconds (per worker).")
@click.option("--n-workers", type=int, default=1, show_default=True,
              help="Worker processes on this machine sharing the study (more machines: share --storage).")
@click.option("--seeds-per-trial", type=int, default=1, show_default=True,
              help="Seeds each trial trains as one batch; its score is their mean final evaluation.")
@click.option("--score", type=click.Choice(["mean", "iqm", "lower-quartile"]), default="mean", show_default=True,
              help="A trial's score over its seeds' final evaluations; lower-quartile favours the worst seeds.")
@click.option("--sampler", type=click.Choice(["tpe", "random"]), default="tpe", show_default=True)
@click.option("--sampler-seed", type=int, default=None, help="Seed of the sampler; worker i of --n-workers takes SEED + i (default: random per worker).")
@click.option("--pruner", type=click.Choice(["median", "halving", "none"]), default="median", show_default=True,
              help="Stops poor trials early from the evaluations the training loop runs.")
@click.option("--eval-freq", type=int, default=None,
              help="Steps between the evaluations the pruner sees (default: the preset's, else a tenth of the budget).")
@click.option("--space", "space_file", type=click.Path(dir_okay=False), default=None,
              help="A YAML search space (default: agents/tune.yml's entry for ALGO).")
@click.option("--preset", default=None, help="The preset the trials start from (default: the one named ENV_ID).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Fixed config values under every trial.")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed of every trial.")
@click.option("--study-name", default=None, help="Default: ALGO-ENV_ID.")
@click.option("--storage", default=None,
              help="A journal file (default: LOGDIR/tune/studies.journal) or a database URL (postgresql://...).")
@click.option("--logdir", default="runs", show_default=True, help="Trials write LOGDIR/tune/STUDY/trial-N/.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--show", is_flag=True, help="Print the study's best trials and parameter importances, then exit.")
@click.option("--export-best", type=click.Path(dir_okay=False), default=None,
              help="Write the best trial as a YAML file that `--config` takes, then exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def tune(algo, env_id, data, n_trials, timeout, n_workers, seeds_per_trial, score, sampler, sampler_seed, pruner, eval_freq,
         space_file, preset, overrides, seed, study_name, storage, logdir, device, show, export_best, quiet):
    """Search ALGO's hyperparameters on ENV_ID (Q-learning) or --data NAME (generative) with Optuna.

    Q-learning trials score their seeds' final evaluation returns (--score); generative
    trials their mean domain FID (lower is better).

    \b
    Examples:
      rlgen tune dqn CartPole-v1 --n-trials 30 --seeds-per-trial 8 --n-workers 2
      rlgen tune dqn CartPole-v1 --show
      rlgen tune dqn CartPole-v1 --export-best best.yml && rlgen train-dqn CartPole-v1 --config best.yml
      rlgen tune pqn CartPole-v1 --storage postgresql://user:pw@db/optuna   # workers on many machines
      rlgen tune vae --data digits --n-trials 10
    """
    refuse_torchrun("tune", "start workers with --n-workers, or the same command on each machine with one --storage")
    from rlgen.config import parse_override
    from rlgen.tune.report import export_best as write_best
    from rlgen.tune.report import show_study
    from rlgen.tune.study import TuneInterrupted, TuneSpec, open_study, run_study

    generative = algo in ("vae", "gan", "diffusion")
    if generative and env_id is not None and data is not None and env_id != data:
        raise InputError(f"rlgen tune {algo}: give the dataset once (--data {data} or {env_id})")
    env_id = (data or env_id) if generative else env_id
    if env_id is None:
        raise InputError(f"rlgen tune {algo} needs " + ("--data NAME (e.g. --data digits)" if generative
                                                      else "ENV_ID (e.g. rlgen tune dqn CartPole-v1)"))
    if data is not None and not generative:
        raise InputError(f"--data is for vae / gan / diffusion; rlgen tune {algo} takes an ENV_ID")
    if n_trials < 1:
        raise InputError(f"--n-trials {n_trials} must be >= 1")
    if n_workers < 1:
        raise InputError(f"--n-workers {n_workers} must be >= 1")
    if timeout is not None and not timeout > 0:
        raise InputError(f"--timeout {timeout} must be > 0 seconds")
    if eval_freq is not None and eval_freq < 1:
        raise InputError(f"--eval-freq {eval_freq} must be >= 1 step")
    spec = TuneSpec(algo, env_id, space_file, preset, dict(parse_override(o) for o in overrides), seed,
                    seeds_per_trial, eval_freq, pruner, score, sampler, sampler_seed, device, logdir,
                    study_name or "", storage)
    if show or export_best:
        study = open_study(spec, create=False)
        if show:
            for line in show_study(study, spec.params()):
                click.echo(line)
        if export_best:
            train = f"rlgen train {algo} --data {env_id}" if generative else f"rlgen train-{algo} {env_id}"
            click.echo(f"wrote {write_best(study, spec, export_best)}; train it with: {train} --config {export_best}")
        return
    try:
        study = run_study(spec, n_trials, timeout, n_workers, progress=not quiet)
    except TuneInterrupted as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(INTERRUPTED_EXIT) from None
    for line in show_study(study, spec.params()):
        click.echo(line)


COMMANDS = [tune]
