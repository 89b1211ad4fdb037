"""Bad input through the CLI: one clear line naming the bad value, non-zero exit, no traceback, nothing changed.

Every case runs against a directory holding finished runs (a tiny DQN run and a
tiny diffusion run); the whole tree is hashed before and after, so a case that
writes, moves or deletes anything fails, as does one that leaves a run directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlgen.cli.main import cli

TINY_DQN = ["--total-steps", "600", "--quiet", "--device", "cpu", "--set", "eval_episodes=0",
            "--set", "learning_starts=100", "--set", "backbone.hidden_sizes=[16]"]  # fmt: skip
TINY_DIFFUSION = ["--data", "digits", "--steps", "2", "--batch-size", "16", "--device", "cpu", "--quiet",
                  "--set", "eval_samples=0", "--set", "sample_interval=0", "--set", "checkpoint_interval=0",
                  "--set", "unet_channels=[8, 16]", "--set", "unet_attention=[false, false]",
                  "--set", "layers_per_block=1", "--set", "norm_num_groups=4", "--set", "warmup_steps=1",
                  "--set", "sample_steps=2", "--set", "class_conditional=true"]  # fmt: skip


def invoke(*args: str):
    # catch_exceptions=False: an exception rlgen did not turn into a message fails the test with its traceback.
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("world")
    runs = root / "runs"
    assert invoke("train-dqn", "CartPole-v1", "--logdir", runs, *TINY_DQN).exit_code == 0
    assert invoke("train", "diffusion", "--logdir", runs, *TINY_DIFFUSION).exit_code == 0
    (dqn,) = runs.glob("CartPole-v1__dqn__*")
    (diffusion,) = runs.glob("digits__diffusion__*")
    bad_yaml = root / "bad.yml"
    bad_yaml.write_text("learning_rate: 1e-3\nbatch_size: [64\n")
    a_file = root / "a_file"
    a_file.write_text("not a directory\n")
    headers = root / "headers"
    headers.mkdir()
    return {"root": root, "runs": runs, "dqn": dqn, "diffusion": diffusion, "bad_yaml": bad_yaml,
            "a_file": a_file, "headers": headers}


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _edit_header(source: Path, target: Path, edit) -> Path:
    """A copy of checkpoint ``source`` whose rlgen JSON header went through ``edit(header) -> None``."""
    data = source.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    st_header = json.loads(data[8 : 8 + length])
    header = json.loads(st_header["__metadata__"]["rlgen"])
    edit(header)
    st_header["__metadata__"]["rlgen"] = json.dumps(header)
    raw = json.dumps(st_header).encode()
    raw += b" " * (-len(raw) % 8)
    target.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
    return target


def _set(path: list[str], value):
    def edit(header):
        node = header["meta"]
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return edit


_DELETE = object()

# (case id, argument builder given the world, fragments the one-line message must contain)
CASES = [
    # -- train-dqn: config values, all refused before the first step
    ("huge-buffer", lambda w: ["train-dqn", "CartPole-v1", "--set", "buffer_size=1e12"], ["buffer_size=1,000,000,000,000", "GiB"]),
    ("batch-over-buffer", lambda w: ["train-dqn", "CartPole-v1", "--set", "buffer_size=10", "--set", "batch_size=128"],
     ["batch_size=128 is larger than buffer_size=10"]),
    ("negative-checkpoint-freq", lambda w: ["train-dqn", "CartPole-v1", "--set", "checkpoint_freq=-100"], ["checkpoint_freq=-100"]),
    ("negative-eval-freq", lambda w: ["train-dqn", "CartPole-v1", "--set", "eval_freq=-1"], ["eval_freq=-1"]),
    ("zero-log-interval", lambda w: ["train-dqn", "CartPole-v1", "--set", "log_interval=0"], ["log_interval=0"]),
    ("eval-without-episodes", lambda w: ["train-dqn", "CartPole-v1", "--set", "eval_freq=2000",
                                         "--set", "eval_during_episodes=0"], ["eval_during_episodes=0"]),
    ("huge-total-steps", lambda w: ["train-dqn", "CartPole-v1", "--total-steps", "100000000000000"], ["total_timesteps=100,000,000,000,000"]),
    ("negative-seed", lambda w: ["train-dqn", "CartPole-v1", "--seed", "-1"], ["seed=-1"]),
    ("logdir-is-a-file", lambda w: ["train-dqn", "CartPole-v1", "--logdir", w["a_file"]], ["is a file"]),
    ("nan-learning-rate", lambda w: ["train-dqn", "CartPole-v1", "--set", "learning_rate=nan"], ["learning_rate=nan"]),
    ("unknown-loss", lambda w: ["train-dqn", "CartPole-v1", "--set", "loss=l1"], ["loss='l1'", "'huber', 'mse'"]),
    ("unknown-field", lambda w: ["train-dqn", "CartPole-v1", "--set", "nosuchfield=1"], ["'nosuchfield'"]),
    ("zero-tau", lambda w: ["train-dqn", "CartPole-v1", "--set", "tau=0"], ["tau=0"]),
    ("eps-above-one", lambda w: ["train-dqn", "CartPole-v1", "--set", "exploration_final_eps=2"], ["exploration_final_eps=2"]),
    ("compile-recurrent", lambda w: ["train-dqn", "CartPole-v1", "--set", "backbone.kind=lstm", "--set", "compile=true"],
     ["compile=true", "lstm"]),
    ("huge-network", lambda w: ["train-dqn", "CartPole-v1", "--set", "backbone.hidden_sizes=[200000, 200000]"],
     ["40,002,600,003 parameters", "GiB", "use smaller layers"]),
    ("zero-envs", lambda w: ["train-dqn", "CartPole-v1", "--num-envs", "0"], ["num_envs=0"]),
    ("zero-keep-checkpoints", lambda w: ["train-dqn", "CartPole-v1", "--set", "keep_checkpoints=0"], ["keep_checkpoints=0"]),
    ("missing-config-file", lambda w: ["train-dqn", "CartPole-v1", "--config", w["root"] / "nope.yml"], ["does not exist"]),
    ("yaml-syntax-error", lambda w: ["train-dqn", "CartPole-v1", "--config", w["bad_yaml"]], ["not valid YAML", "line 3, column 1"]),
    ("missing-gpu", lambda w: ["train-dqn", "CartPole-v1", "--device", "cuda:7"], ["cuda:7"]),
    ("unknown-device", lambda w: ["train-dqn", "CartPole-v1", "--device", "tpu"], ["'tpu'"]),
    ("unknown-env", lambda w: ["train-dqn", "NoSuchEnv-v0"], ["NoSuchEnv-v0"]),
    # -- resume: the run's own config, its own directory, what its files say
    ("resume-with-seed", lambda w: ["train-dqn", "CartPole-v1", "--resume", w["dqn"], "--seed", "3"], ["--seed cannot be given"]),
    ("resume-with-set-and-envs", lambda w: ["train-dqn", "CartPole-v1", "--resume", w["dqn"], "--set", "gamma=0.9",
                                            "--num-envs", "2"], ["--num-envs, --set cannot be given"]),
    ("resume-with-missing-config", lambda w: ["train-dqn", "CartPole-v1", "--resume", w["dqn"], "--config",
                                              w["root"] / "nope.yml"], ["--config cannot be given"]),
    ("resume-below-done", lambda w: ["train-dqn", "CartPole-v1", "--resume", w["dqn"], "--total-steps", "10"],
     ["--total-steps 10 is below the"]),
    ("resume-other-env", lambda w: ["train-dqn", "Acrobot-v1", "--resume", w["dqn"]], ["is a run of CartPole-v1, not Acrobot-v1"]),
    ("resume-nothing", lambda w: ["train-dqn", "CartPole-v1", "--resume", w["root"] / "no_run"], ["does not exist"]),
    ("resume-truncated-replay", "truncated-replay", ["replay file", "unreadable", "Delete it"]),
    ("resume-bad-lr-schedule", "lr-schedule", ["'lr_schedule'"]),
    # -- eval / enjoy: values and checkpoints that are not what they claim
    ("eval-epsilon-two", lambda w: ["eval", w["dqn"], "--epsilon", "2"], ["--epsilon 2.0"]),
    ("eval-zero-episodes", lambda w: ["eval", w["dqn"], "--episodes", "0"], ["episodes=0"]),
    ("header-without-config", "no-config", ["'config'"]),
    ("header-obs-shape-string", "obs-shape", ["'obs_shape'"]),
    ("header-obs-dtype", "obs-dtype", ["'obs_dtype'", "float32"]),
    ("header-env-with-colon", "colon", ["os:system", "no ':'"]),
    ("header-huge-network", "huge-net", ["does not fit the stored tensors"]),
    ("truncated-checkpoint", "truncated", ["truncated"]),
    ("eval-a-diffusion-run", lambda w: ["eval", w["diffusion"]], ["'diffusion' checkpoint, not a DQN one"]),
    ("enjoy-avi", lambda w: ["enjoy", w["dqn"], "--video", w["root"] / "out.avi"], [".mp4 or .gif"]),
    # -- generative
    ("sample-guidance-nan", lambda w: ["sample", "diffusion", "--run", w["diffusion"], "--guidance", "nan",
                                       "--out", w["root"] / "x.png"], ["--guidance nan"]),
    ("sample-corrupt-scheduler-config", "scheduler-config", ["scheduler_config.json", "delete it"]),
    ("sample-a-dqn-run", lambda w: ["sample", "gan", "--run", w["dqn"], "--out", w["root"] / "x.png"],
     ["'dqn' checkpoint", "`rlgen eval` or `rlgen enjoy`"]),
    ("sample-zero-images", lambda w: ["sample", "diffusion", "--run", w["diffusion"], "-n", "0",
                                      "--out", w["root"] / "x.png"], ["-n 0"]),
    ("train-zero-steps", lambda w: ["train", "vae", "--steps", "0", "--logdir", w["runs"]], ["steps=0"]),
    ("train-resume-with-seed", lambda w: ["train", "diffusion", "--resume", w["diffusion"], "--seed", "2"], ["--seed cannot be given"]),
    ("train-resume-below-done", lambda w: ["train", "diffusion", "--resume", w["diffusion"], "--steps", "1",
                                           "--device", "cpu"], ["--steps 1 is below"]),
    ("train-unknown-dataset", lambda w: ["train", "vae", "--data", "nosuchdata", "--logdir", w["runs"]], ["nosuchdata"]),
    ("train-logdir-is-a-file", lambda w: ["train", "gan", "--data", "digits", "--logdir", w["a_file"], "--steps", "1",
                                          "--device", "cpu", "--quiet"], ["is a file"]),
    ("train-gan-zero-critic", lambda w: ["train", "gan", "--set", "n_critic=0"], ["n_critic=0"]),
    ("train-negative-keep", lambda w: ["train", "vae", "--set", "keep_checkpoints=-1"], ["keep_checkpoints=-1"]),
]


def _prepared(kind: str, world: dict[str, Path]) -> list:
    """Arguments of the cases that need a damaged copy of a run (made before the tree is hashed)."""
    dqn, headers = world["dqn"], world["headers"]
    ckpt = dqn / "checkpoint.safetensors"
    if kind in ("truncated-replay", "lr-schedule"):
        copy = headers / f"CartPole-v1__dqn__{kind}"
        if not copy.exists():
            shutil.copytree(dqn, copy)
            (ckpt_copy := copy / "checkpoint.safetensors").unlink()
            if kind == "truncated-replay":
                shutil.copyfile(ckpt, ckpt_copy)
                _edit_header(ckpt, ckpt_copy, _set(["run_name"], copy.name))
                (replay,) = copy.glob("replay-*.safetensors")
                replay.write_bytes(replay.read_bytes()[:1000])
            else:
                _edit_header(ckpt, ckpt_copy, lambda h: h["meta"].update(run_name=copy.name, lr_schedule=[1, 2]))
        return ["train-dqn", "CartPole-v1", "--resume", copy, "--total-steps", "1200", "--device", "cpu", "--quiet"]
    if kind == "scheduler-config":
        copy = headers / "digits__diffusion__bad"
        if not copy.exists():
            shutil.copytree(world["diffusion"], copy)
            (copy / "scheduler_config.json").write_text('{"num_train_timesteps": 1000,')
        return ["sample", "diffusion", "--run", copy, "--out", world["root"] / "x.png", "--device", "cpu"]
    target = headers / f"{kind}.safetensors"
    if not target.exists():
        if kind == "truncated":
            target.write_bytes(ckpt.read_bytes()[:3000])
        else:
            edits = {
                "no-config": _set(["config"], _DELETE),
                "obs-shape": _set(["obs_shape"], "four"),
                "obs-dtype": _set(["obs_dtype"], "object"),
                "colon": _set(["config", "env_id"], "os:system"),
                "huge-net": _set(["config", "backbone", "hidden_sizes"], [200_000, 200_000]),  # 160 GB of weights
            }
            _edit_header(ckpt, target, edits[kind])
    return ["eval", target, "--episodes", "2"]


@pytest.mark.parametrize("case, args, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(world, case, args, fragments):
    argv = _prepared(args, world) if isinstance(args, str) else args(world)
    before = _tree(world["root"])
    result = invoke(*argv)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert _tree(world["root"]) == before, "a refused command changed files on disk"


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


def test_a_bug_keeps_its_traceback_and_debug_shows_rlgen_errors_in_full(world, monkeypatch):
    import rlgen.dqn.agent as agent

    def broken(*args, **kwargs):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(agent.DQNAgent, "load", broken)
    result = CliRunner().invoke(cli, ["eval", str(world["dqn"])])
    assert isinstance(result.exception, KeyError)  # not swallowed into a one-line message
    monkeypatch.undo()
    result = CliRunner().invoke(cli, ["--debug", "eval", str(world["dqn"]), "--epsilon", "2"])
    from rlgen.errors import InputError

    assert isinstance(result.exception, InputError)  # --debug re-raises: the traceback is shown
