"""``rlgen tune``: search spaces, storage, workers sharing a study, pruning from the loop's evaluations."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from click.testing import CliRunner  # noqa: E402

from rlgen.cli.main import cli  # noqa: E402
from rlgen.dqn import make_config  # noqa: E402
from rlgen.errors import InputError  # noqa: E402
from rlgen.tune.space import parse_space  # noqa: E402
from rlgen.tune.study import TuneSpec, objective  # noqa: E402

SMALL = ["--set", "total_timesteps=1500", "--set", "learning_starts=200", "--set", "eval_episodes=5",
         "--set", "keep_best=false"]


def _tree(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(path.rglob("*")) if path.exists() else []:
        digest.update(str(f).encode())
        if f.is_file():
            digest.update(f.read_bytes())
    return digest.hexdigest()


def test_a_space_suggests_inside_its_ranges():
    params = parse_space({"learning_rate": {"float": [1e-4, 1e-2], "log": True}, "gradient_steps": {"int": [1, 4]},
                          "backbone.hidden_sizes": {"choice": [[64, 64], [128]]}}, "test")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = {p.name: p.suggest(trial) for p in params}
        assert 1e-4 <= values["learning_rate"] <= 1e-2 and values["gradient_steps"] in (1, 2, 3, 4)
        assert values["backbone.hidden_sizes"] in ((64, 64), (128,))
        study.tell(trial, 0.0)


@pytest.mark.parametrize("space, message", [
    ({"learning_rate": {"float": [1e-2, 1e-4]}}, "is empty"),
    ({"learning_rate": {"float": [0.0, 1e-2], "log": True}}, "log scale needs low > 0"),
    ({"batch_size": {"choice": []}}, "non-empty list"),
    ({"batch_size": {"range": [1, 2]}}, "exactly one of float, int, choice"),
    ({"gradient_steps": {"int": [1.5, 3]}}, "integers"),
])
def test_a_bad_space_is_refused(space, message):
    with pytest.raises(InputError, match=message):
        parse_space(space, "test")


@pytest.mark.parametrize("space_text, expected", [
    ("learnin_rate: {float: [0.001, 0.01]}", "unknown DQNConfig field 'learnin_rate'"),
    ("learning_rate: {float: [0.01, 0.001]}", "[0.01, 0.001] is empty"),
    ("batch_size: {choice: [0, 64]}", "batch_size = 0"),
])
def test_bad_spaces_unknown_storage_and_studies_get_one_line_and_change_nothing(tmp_path, space_text, expected):
    space = tmp_path / "space.yml"
    space.write_text(space_text + "\n")
    logdir = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["tune", "dqn", "CartPole-v1", "--space", str(space), "--logdir", str(logdir)])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output
    assert not logdir.exists()


def test_unreachable_storage_and_missing_studies_are_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = _tree(tmp_path)
    for args, expected in (
        (["--storage", f"postgresql://nobody:secret@127.0.0.1:{port}/optuna"], "cannot reach --storage"),
        (["--storage", "mongodb://x/y"], "unknown scheme 'mongodb'"),
        (["--show", "--logdir", str(tmp_path / "runs")], "no study journal at"),
    ):
        result = CliRunner().invoke(cli, ["tune", "dqn", "CartPole-v1", *args])
        assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, result.output
        assert "secret" not in result.output
    assert _tree(tmp_path) == before
    CliRunner().invoke(cli, ["tune", "dqn", "CartPole-v1", "--n-trials", "1", "--pruner", "none", "--quiet",
                             "--logdir", str(tmp_path / "runs"), *SMALL])
    missing = CliRunner().invoke(cli, ["tune", "dqn", "CartPole-v1", "--show", "--study-name", "nope",
                                       "--logdir", str(tmp_path / "runs")])
    assert missing.exit_code == 2 and "no study named 'nope'" in missing.output and "dqn-CartPole-v1" in missing.output


def _two_workers(tmp_path, storage_args, n_trials=4):
    result = subprocess.run(
        [sys.executable, "-m", "rlgen.cli.main", "tune", "dqn", "CartPole-v1", "--n-trials", str(n_trials),
         "--n-workers", "2", "--pruner", "none", "--quiet", "--logdir", str(tmp_path / "runs"), *storage_args, *SMALL],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _check_shared(study, n_trials):
    trials = study.get_trials()
    states = {t.state for t in trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states  # none lost
    assert len(trials) >= n_trials and [t.number for t in trials] == list(range(len(trials)))
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both workers ran trials of the one study
    for t in trials:  # one run directory per trial
        assert Path(t.user_attrs["run_dir"]).is_dir()


def test_two_workers_share_a_journal_file(tmp_path):
    out = _two_workers(tmp_path, ["--sampler-seed", "3"])
    assert "study dqn-CartPole-v1" in out
    from rlgen.tune.storage import open_storage

    storage = open_storage(None, tmp_path / "runs" / "tune" / "studies.journal", create=False)
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage=storage)
    _check_shared(study, 4)
    # one --sampler-seed, yet each worker samples its own trials (seed + worker index)
    trials = study.get_trials()
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server (Debian's postgresql package), run as the postgres user when root."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql); .ci/run installs it")
    bindir = bins[-1]
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="rlgen-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, postgres):
    _two_workers(tmp_path, ["--storage", postgres, "--study-name", "shared"])
    study = optuna.load_study(study_name="shared", storage=postgres)
    _check_shared(study, 4)
    assert not (tmp_path / "runs" / "tune" / "studies.journal").exists()  # the database holds the study


def test_the_loop_evaluations_feed_the_pruner_and_stop_the_trial(tmp_path):
    class PruneAtFirstReport(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return bool(trial.intermediate_values)

    spec = TuneSpec("dqn", "CartPole-v1", overrides={"total_timesteps": 4000, "learning_starts": 200,
                                                    "eval_episodes": 5}, seeds_per_trial=2, eval_freq=1000,
                    logdir=str(tmp_path))
    params = spec.check()
    study = optuna.create_study(direction="maximize", pruner=PruneAtFirstReport())
    study.optimize(objective(spec, params), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1008]  # the first evaluation at or after 1,000 steps (16 copies)
    from rlgen.training import load_checkpoint

    run_dir = Path(trial.user_attrs["run_dir"])
    assert load_checkpoint(run_dir / "seed-0" / "checkpoint.safetensors").meta["step"] == 1008  # stopped there


def test_the_best_trial_exports_as_a_config_file(tmp_path):
    logdir = str(tmp_path / "runs")
    space = tmp_path / "space.yml"
    space.write_text("learning_rate: {float: [1.0e-3, 1.0e-2], log: true}\n"
                     "backbone.layer_norm: {choice: [false, true]}\n")
    result = CliRunner().invoke(cli, ["tune", "dqn", "CartPole-v1", "--n-trials", "2", "--pruner", "none",
                                      "--sampler", "random", "--sampler-seed", "3", "--quiet", "--logdir", logdir,
                                      "--space", str(space), *SMALL])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(cli, ["tune", "dqn", "CartPole-v1", "--show", "--logdir", logdir])
    assert "2 complete" in shown.output and "importances:" in shown.output
    out = tmp_path / "best.yml"
    exported = CliRunner().invoke(cli, ["tune", "dqn", "CartPole-v1", "--export-best", str(out), "--logdir", logdir,
                                        "--space", str(space)])
    assert exported.exit_code == 0, exported.output
    from rlgen.tune.storage import open_storage

    study = optuna.load_study(study_name="dqn-CartPole-v1",
                              storage=open_storage(None, Path(logdir) / "tune" / "studies.journal", create=False))
    config = make_config("CartPole-v1", config_file=out)
    assert config.learning_rate == pytest.approx(study.best_params["learning_rate"])
    assert config.total_timesteps == 1500  # the study's fixed --set values come with it
    assert config.backbone.layer_norm == study.best_params["backbone.layer_norm"]  # a nested field


def test_a_generative_study_minimizes_fid_and_its_evaluations_feed_the_pruner(tmp_path):
    class PruneAtFirstReport(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return bool(trial.intermediate_values)

    spec = TuneSpec("vae", "digits", overrides={"steps": 120, "eval_samples": 100}, eval_freq=40,
                    logdir=str(tmp_path))
    assert spec.direction == "minimize"
    params = spec.check()
    study = optuna.create_study(direction=spec.direction, pruner=PruneAtFirstReport())
    study.optimize(objective(spec, params), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [40]
    from rlgen.training import load_checkpoint

    assert load_checkpoint(Path(trial.user_attrs["run_dir"]) / "checkpoint.safetensors").meta["step"] == 40
    done = optuna.create_study(direction=spec.direction, pruner=optuna.pruners.NopPruner())
    done.optimize(objective(spec, params), n_trials=1)
    assert done.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert done.best_value == pytest.approx(done.trials[0].user_attrs["fids"][0]) and done.best_value > 0


def test_generative_tuning_needs_a_dataset():
    result = CliRunner().invoke(cli, ["tune", "gan"])
    assert result.exit_code == 2 and "--data NAME" in result.output
    result = CliRunner().invoke(cli, ["tune", "dqn", "CartPole-v1", "--data", "digits"])
    assert result.exit_code == 2 and "--data is for vae / gan / diffusion" in result.output
