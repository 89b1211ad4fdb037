"""Behaviour of the shared training mechanics in rlgen.training."""

from __future__ import annotations

import copy
import io
import json
import math
import random
import re
import signal
import threading
import tokenize
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch import nn

import rlgen.training
from rlgen.errors import CheckpointError
from rlgen.training import (
    EMA,
    GracefulInterrupt,
    Precision,
    ProgressBar,
    RunLogger,
    checkpoint_info,
    gradient_step,
    load_checkpoint,
    make_grid,
    make_lr_schedule,
    make_optimizer,
    maybe_compile,
    resolve_device,
    save_checkpoint,
    save_image_grid,
    seed_everything,
)
from rlgen.training import checkpoint as checkpoint_module
from rlgen.training import optim as optim_module

META = {"config": {"hidden": 16}, "step": 5, "algo": "test"}


# ----------------------------------------------------------------------------- device / seeding / precision


def test_resolve_device_auto_and_explicit():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device().type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.device_count() > 3, reason="this machine has a cuda:3")
def test_resolve_device_unavailable_gpu_says_what_to_do():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    expected = rf"cuda:3 is not available: this machine has {count} CUDA devices; use --device cpu or auto"
    with pytest.raises(ValueError, match=expected):
        resolve_device("cuda:3")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cpu:1", "", "cuda:-1", "tpu"])
def test_resolve_device_rejects_garbage(spec):
    with pytest.raises(ValueError, match="not a valid device; use auto, cpu, cuda, cuda:N"):
        resolve_device(spec)


def _draw() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_reproduces_every_generator():
    seed_everything(7)
    first = _draw()
    seed_everything(7)
    assert _draw() == first
    seed_everything(8)
    other = _draw()
    assert all(a != b for a, b in zip(first, other))


def test_seed_everything_deterministic_flag():
    try:
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
    finally:
        seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_precision_falls_back_to_fp32_off_cuda():
    for mode in ("fp32", "bf16", "fp16"):
        precision = Precision(mode, torch.device("cpu"))
        assert not precision.enabled and precision.scaler is None
        with precision.autocast():
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="'fp8' is not supported; use one of: fp32, bf16, fp16"):
        Precision("fp8", torch.device("cpu"))


# ----------------------------------------------------------------------------- optimizers / schedules / steps


def test_make_optimizer_by_name():
    params = [nn.Parameter(torch.zeros(3))]
    assert isinstance(make_optimizer("adam", params, 1e-3), torch.optim.Adam)
    adamw = make_optimizer("adamw", params, 1e-3, weight_decay=0.01, betas=(0.5, 0.9))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["weight_decay"] == 0.01 and adamw.param_groups[0]["betas"] == (0.5, 0.9)
    assert isinstance(make_optimizer("rmsprop", params, 1e-3, eps=1e-5), torch.optim.RMSprop)
    sgd = make_optimizer("sgd", params, 0.1)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; use one of: adam, adamw, rmsprop, sgd"):
        make_optimizer("lion", params, 1e-3)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        make_optimizer("adam", params, 0.0)


def _lrs(name: str, steps: int, **kwargs) -> list[float]:
    """The lr used by each of the first ``steps`` optimizer steps (base lr 1)."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = make_lr_schedule(optimizer, name, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_lr_schedule_warmup_then_constant():
    assert _lrs("constant", 7, total_steps=10, warmup_steps=4) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1])


def test_lr_schedule_linear():
    lrs = _lrs("linear", 13, total_steps=10, final_factor=0.1)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[5] == pytest.approx(1 + (0.1 - 1) * 0.5)
    assert lrs[10] == pytest.approx(0.1) and lrs[12] == pytest.approx(0.1)  # stays at the floor
    warm = _lrs("linear", 13, total_steps=12, warmup_steps=2)
    assert warm[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert warm[7] == pytest.approx(0.5)  # 5 of 10 decay steps done
    assert warm[12] == pytest.approx(0.0)


def test_lr_schedule_cosine():
    lrs = _lrs("cosine", 11, total_steps=10)
    assert lrs[0] == pytest.approx(1.0) and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(0.0)
    assert lrs[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    floor = _lrs("cosine", 6, total_steps=10, final_factor=0.2)
    assert floor[5] == pytest.approx(0.2 + 0.8 * 0.5)


def test_lr_schedule_step_and_exponential():
    assert _lrs("step", 7, total_steps=100, step_size=3, gamma=0.5) == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])
    lrs = _lrs("exponential", 5, total_steps=100, step_size=2, gamma=0.5)
    assert lrs == pytest.approx([1, 0.5**0.5, 0.5, 0.5**1.5, 0.25])
    warm = _lrs("step", 4, total_steps=100, warmup_steps=2, step_size=1, gamma=0.1)
    assert warm == pytest.approx([0.5, 1.0, 1.0, 0.1])


def test_lr_schedule_rejects_bad_arguments():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    expected = "unknown lr schedule 'poly'; use one of: constant, linear, step, exponential, cosine"
    with pytest.raises(ValueError, match=expected):
        make_lr_schedule(optimizer, "poly", total_steps=10)
    with pytest.raises(ValueError, match="warmup_steps must be in"):
        make_lr_schedule(optimizer, "linear", total_steps=10, warmup_steps=11)


def test_gradient_step_clips_to_max_norm_and_returns_preclip_norm():
    torch.manual_seed(0)
    model = nn.Linear(10, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: we only inspect the gradients
    x = torch.randn(16, 10)
    loss_fn = lambda: (model(x) * 100).pow(2).mean()  # noqa: E731
    loss_fn().backward()
    expected = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    assert expected > 10
    norm = gradient_step(loss_fn(), optimizer, model.parameters(), max_grad_norm=0.5)
    assert norm == pytest.approx(expected, rel=1e-5)  # the old grads were zeroed, not accumulated
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    assert clipped == pytest.approx(0.5, rel=1e-4)
    assert gradient_step(loss_fn(), optimizer, model.parameters()) == 0.0


def test_gradient_step_fits_a_tiny_regression():
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = 3 * x + 1
    model = nn.Linear(1, 1)
    optimizer = make_optimizer("adam", model.parameters(), 0.05)
    first = nn.functional.mse_loss(model(x), y).item()
    for _ in range(300):
        gradient_step(nn.functional.mse_loss(model(x), y), optimizer, model.parameters(), max_grad_norm=10.0)
    assert nn.functional.mse_loss(model(x), y).item() < 1e-3 * first
    assert model.weight.item() == pytest.approx(3, abs=0.05) and model.bias.item() == pytest.approx(1, abs=0.05)


def test_maybe_compile(monkeypatch):
    model = nn.Linear(2, 2)
    assert maybe_compile(model, False) is model
    monkeypatch.setattr(optim_module.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="C\\+\\+ compiler.*set compile=false"):
        maybe_compile(model, True)


# ----------------------------------------------------------------------------- EMA


def test_ema_matches_hand_computed_average():
    model = nn.Linear(2, 1, bias=False)
    weights = [[1.0, 2.0], [3.0, -1.0], [0.0, 4.0]]
    with torch.no_grad():
        model.weight.copy_(torch.tensor([weights[0]]))
    ema = EMA(model, decay=0.9, warmup=False)
    expected = np.array(weights[0])
    for w in weights[1:]:
        with torch.no_grad():
            model.weight.copy_(torch.tensor([w]))
        ema.update(model)
        expected = 0.9 * expected + 0.1 * np.array(w)
    assert np.allclose(ema.shadow.weight.detach().numpy()[0], expected, atol=1e-6)
    assert not ema.shadow.training and not ema.shadow.weight.requires_grad
    assert torch.equal(ema(torch.ones(1, 2)), ema.shadow(torch.ones(1, 2)))


def test_ema_warmup_decay_and_state_round_trip(tmp_path):
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ema = EMA(model, decay=0.999)
    assert ema.current_decay() == pytest.approx(1 / 10)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay 0.1: 0.1 * 0 + 0.9 * 1
    assert torch.allclose(ema.shadow.weight, torch.full((1, 2), 0.9))
    assert ema.current_decay() == pytest.approx(2 / 11)
    path = save_checkpoint(tmp_path / "ema", modules={"ema": ema}, meta=META)
    fresh = EMA(nn.Linear(2, 1, bias=False), decay=0.999)
    load_checkpoint(path).load_module("ema", fresh)
    assert fresh.num_updates == 1 and torch.equal(fresh.shadow.weight, ema.shadow.weight)


# ----------------------------------------------------------------------------- checkpoints


class _Net(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))
        self.norm = nn.BatchNorm1d(4)  # float and int64 buffers
        self.register_buffer("table", torch.arange(6, dtype=torch.float64).reshape(2, 3).t())  # non-contiguous

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.norm(x))


def _assert_same_structure(a, b, where="state"):
    """Equal values, equal Python types (tuples stay tuples), bit-equal tensors."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same_structure(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_structure(x, y, f"{where}/{i}")
    else:
        assert a == b, where


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "sgd"])
def test_checkpoint_round_trip_is_bit_exact(tmp_path, name):
    torch.manual_seed(0)
    model = _Net()
    optimizer = make_optimizer(name, model.parameters(), 1e-2)
    make_lr_schedule(optimizer, "cosine", total_steps=10)  # adds initial_lr to param_groups
    for _ in range(3):
        gradient_step(model(torch.randn(8, 4)).pow(2).mean(), optimizer, model.parameters())
    extra = {"priorities": torch.rand(5, dtype=torch.float64), "flags": torch.tensor([True, False])}
    meta = {**META, "note": [1, 2.5, None]}
    path = save_checkpoint(tmp_path / "ckpt.safetensors", modules={"net": model}, optimizers={name: optimizer},
                           extra_tensors=extra, meta=meta)
    assert path == tmp_path / "ckpt.safetensors"

    fresh = _Net()
    fresh_optimizer = make_optimizer(name, fresh.parameters(), 1e-2)
    make_lr_schedule(fresh_optimizer, "cosine", total_steps=10)
    checkpoint = load_checkpoint(path)
    checkpoint.load_module("net", fresh)
    checkpoint.load_optimizer(name, fresh_optimizer)
    _assert_same_structure(model.state_dict(), fresh.state_dict())
    _assert_same_structure(optimizer.state_dict(), fresh_optimizer.state_dict())
    assert checkpoint.meta == meta
    _assert_same_structure(checkpoint.extra, extra)

    info = checkpoint_info(path)
    assert info["meta"] == meta and info["optimizers"] == [name] and info["extra"] == ["priorities", "flags"]
    assert info["modules"] == {"net": sum(t.numel() for t in model.state_dict().values())}


def test_checkpoint_tied_weights_and_missing_names(tmp_path):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight  # tied: one storage, two state_dict keys
    path = save_checkpoint(tmp_path / "tied", modules={"m": model}, meta=META)
    assert path.name == "tied.safetensors"
    fresh = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    fresh[1].weight = fresh[0].weight
    checkpoint = load_checkpoint(path)
    checkpoint.load_module("m", fresh)
    assert torch.equal(fresh[0].weight, model[0].weight) and fresh[1].weight is fresh[0].weight
    with pytest.raises(CheckpointError, match="has no module 'q'; it has: m"):
        checkpoint.load_module("q", fresh)
    with pytest.raises(CheckpointError, match="does not match the model.*missing"):
        checkpoint.load_module("m", nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(CheckpointError, match="has no optimizer 'adam'"):
        checkpoint.load_optimizer("adam", torch.optim.Adam(fresh.parameters()))
    with pytest.raises(ValueError, match="must include .*missing \\['algo'\\]"):
        save_checkpoint(tmp_path / "x", modules={"m": model}, meta={"config": {}, "step": 0})


def _train(model: nn.Module, optimizer, schedule, steps: int) -> None:
    """Draw from torch, numpy and python RNGs every step, plus dropout."""
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 4)
        noise = torch.from_numpy(np.random.randn(8, 1)).float() * random.random()
        y = x.sum(dim=1, keepdim=True) + 0.1 * noise
        loss = nn.functional.mse_loss(model(x), y)
        gradient_step(loss, optimizer, model.parameters(), max_grad_norm=1.0)
        schedule.step()


def _fresh_run(seed: int):
    seed_everything(seed)
    model = _Net(dropout=0.3)
    optimizer = make_optimizer("adam", model.parameters(), 1e-2)
    schedule = make_lr_schedule(optimizer, "cosine", total_steps=12, warmup_steps=3)
    return model, optimizer, schedule


def _resume(path: Path, restore_rng: bool) -> nn.Module:
    model, optimizer, schedule = _fresh_run(seed=123)  # different init and RNG state on purpose
    checkpoint = load_checkpoint(path)
    checkpoint.load_module("model", model)
    checkpoint.load_optimizer("adam", optimizer)
    schedule.load_state_dict(checkpoint.meta["schedule"])
    if restore_rng:
        checkpoint.restore_rng()
    _train(model, optimizer, schedule, 6)
    return model


def test_exact_resume_matches_uninterrupted_run(tmp_path):
    model, optimizer, schedule = _fresh_run(seed=0)
    _train(model, optimizer, schedule, 12)
    straight = model.state_dict()

    model, optimizer, schedule = _fresh_run(seed=0)
    _train(model, optimizer, schedule, 6)
    meta = {**META, "step": 6, "schedule": schedule.state_dict()}
    path = save_checkpoint(tmp_path / "half", modules={"model": model}, optimizers={"adam": optimizer}, meta=meta)
    del model, optimizer, schedule

    resumed = _resume(path, restore_rng=True).state_dict()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    # Control: without the RNG the run diverges, so the test above really checks RNG restoring.
    diverged = _resume(path, restore_rng=False).state_dict()
    assert not torch.equal(straight["body.0.weight"], diverged["body.0.weight"])


def _one_line_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    with pytest.raises(CheckpointError):
        checkpoint_info(path)
    return message


def test_checkpoint_errors_are_one_helpful_line(tmp_path):
    assert "does not exist; check the path" in _one_line_error(tmp_path / "nope.safetensors")

    path = save_checkpoint(tmp_path / "good", modules={"net": _Net()}, meta=META)
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    # No run directory around it, so no earlier checkpoint to point to (tests/test_run_checkpoints.py has one).
    assert "is truncated" in _one_line_error(cut) and "no earlier checkpoint of this run is kept" in _one_line_error(cut)
    cut.write_bytes(data[:30])  # cut inside the header
    assert "is truncated" in _one_line_error(cut)
    cut.write_bytes(b"")
    assert "is truncated" in _one_line_error(cut)

    text = tmp_path / "notes.safetensors"
    text.write_text("these are my notes, not a checkpoint\n" * 10)
    assert "is not a safetensors file" in _one_line_error(text)

    bare = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({"w": torch.ones(3)}, str(bare), metadata={"format": "pt"})
    assert "not an rlgen checkpoint (no 'rlgen' header)" in _one_line_error(bare)


def test_atomic_save_keeps_old_checkpoint_on_failure(tmp_path, monkeypatch):
    model = _Net()
    path = save_checkpoint(tmp_path / "last.safetensors", modules={"net": model}, meta=META)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]
    original = path.read_bytes()

    broken = _Net()
    monkeypatch.setattr(broken, "state_dict", lambda: {"w": "not a tensor"})
    with pytest.raises(ValueError, match="'w' is a str, not a tensor"):
        save_checkpoint(path, modules={"net": broken}, meta={**META, "step": 99})

    def crash(fd):  # the disk fails after the temp file was (partly) written
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, modules={"net": _Net()}, meta={**META, "step": 99})
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]  # no .tmp left behind
    assert path.read_bytes() == original
    assert load_checkpoint(path).meta["step"] == META["step"]


def _unsafe_serialisation(source: str) -> list[str]:
    """Code (not comments or strings) that uses pickle, torch.save or torch.load."""
    readline = io.StringIO(source).readline
    names = [tok.string for tok in tokenize.generate_tokens(readline) if tok.type in (tokenize.NAME, tokenize.OP)]
    found = []
    for i, name in enumerate(names):
        attribute = i > 0 and names[i - 1] == "."  # safetensors.torch.save is fine
        if name in ("pickle", "cPickle", "dill") or (
            name == "torch" and not attribute and names[i + 1 : i + 3] in ([".", "save"], [".", "load"])
        ):
            found.append(" ".join(names[i : i + 3]))
    return found


def test_package_never_uses_pickle():
    """Checkpoints must not execute code on load: no pickle, torch.save or torch.load in the code."""
    assert _unsafe_serialisation("import pickle\ntorch.save(x, 'f')\ny = torch.load('f')\n") == [
        "pickle torch .", "torch . save", "torch . load"
    ]
    assert _unsafe_serialisation("safetensors.torch.save(t)  # not torch.load\ns = 'pickle'\n") == []
    offenders = {
        source.name: _unsafe_serialisation(source.read_text())
        for source in Path(rlgen.training.__file__).parent.glob("*.py")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


# ----------------------------------------------------------------------------- logging


def test_run_logger_writes_run_dir_config_and_events(tmp_path):
    config = {"learning_rate": 1e-3, "backbone": {"hidden_sizes": [64, 64], "kind": "mlp"}, "max_grad_norm": None}
    logger = RunLogger(tmp_path, "ALE/Pong-v5", "dqn", 3, config)
    assert re.fullmatch(r"ALE-Pong-v5__dqn__3__\d{10}", logger.run_dir.name) and logger.run_dir.parent == tmp_path
    assert json.loads((logger.run_dir / "config.json").read_text()) == config
    other = RunLogger(tmp_path, "ALE/Pong-v5", "dqn", 3, config)  # same second: a distinct directory
    assert other.run_dir != logger.run_dir
    other.close()

    logger.scalar("charts/episodic_return", 1.5, step=10)
    logger.scalars({"losses/td_loss": torch.tensor(0.25), "charts/SPS": 100}, step=20)
    logger.image_grid("samples/images", torch.rand(5, 3, 8, 8), step=20, nrow=2)
    logger.histogram("charts/q_values", torch.randn(100), step=20)
    logger.video("eval/video", np.random.randint(0, 255, (4, 16, 16, 3), dtype=np.uint8), step=20, fps=10)
    logger.hparams_final({"eval/final_return": 3.5})
    logger.close()

    acc = EventAccumulator(str(logger.run_dir), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"charts/episodic_return", "losses/td_loss", "charts/SPS", "eval/final_return"} <= set(tags["scalars"])
    assert [(e.step, e.value) for e in acc.Scalars("charts/episodic_return")] == [(10, 1.5)]
    assert acc.Scalars("losses/td_loss")[0].value == 0.25
    assert acc.Scalars("eval/final_return")[0].value == 3.5
    grid = acc.Images("samples/images")[0]
    assert (grid.width, grid.height) == (2 * 10 + 2, 3 * 10 + 2)
    assert acc.Images("eval/video")[0].encoded_image_string.startswith(b"GIF8")
    assert "charts/q_values" in tags["histograms"]
    table = acc.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "|learning_rate|0.001|" in table and "|backbone.hidden_sizes|[64, 64]|" in table

    plugin = acc.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(plugin["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["learning_rate"].number_value == 1e-3
    assert start.hparams["backbone.kind"].string_value == "mlp"
    assert start.hparams["max_grad_norm"].string_value == "None"
    experiment = HParamsPluginData.FromString(plugin["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["eval/final_return"]


def test_run_logger_reuses_named_run_dir(tmp_path):
    with RunLogger(tmp_path, "mnist", "vae", 0, {}, run_name="resume-me") as logger:
        assert logger.run_dir == tmp_path / "resume-me"
    with RunLogger(tmp_path, "mnist", "vae", 0, {}, run_name="resume-me") as logger:
        assert logger.run_dir == tmp_path / "resume-me"


def test_make_grid_places_images_row_by_row():
    images = torch.arange(1, 6, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 2, 3, 4)  # image i is all i+1
    grid = make_grid(images, nrow=3, padding=1, pad_value=-1.0)
    assert grid.shape == (2, 2 * (3 + 1) + 1, 3 * (4 + 1) + 1)
    for i in range(5):
        top, left = 1 + (i // 3) * 4, 1 + (i % 3) * 5
        assert (grid[:, top : top + 3, left : left + 4] == i + 1).all()
    assert (grid[:, 0, :] == -1).all() and (grid[:, :, 0] == -1).all()
    assert (grid[:, 5:8, 11:15] == -1).all()  # the empty sixth cell
    assert make_grid(images[:2], nrow=8).shape == (2, 3 + 4, 2 * 6 + 2)
    with pytest.raises(ValueError, match="expects images of shape \\(N, C, H, W\\)"):
        make_grid(torch.zeros(3, 4, 4))


def test_save_image_grid_writes_png(tmp_path):
    images = torch.zeros(4, 3, 5, 6)
    images[0] = 1.0
    path = save_image_grid(images, tmp_path / "sub" / "grid.png", nrow=2)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (2 * 8 + 2, 2 * 7 + 2)
        assert image.getpixel((2, 2)) == (255, 255, 255) and image.getpixel((10, 2)) == (0, 0, 0)
    with Image.open(save_image_grid(torch.rand(3, 1, 4, 4) * 2, tmp_path / "grey.png")) as image:
        assert image.mode == "L" and image.size == (3 * 6 + 2, 6 + 2)


# ----------------------------------------------------------------------------- progress / interrupt


def test_progress_bar_disabled_counts_without_output(capsys):
    with ProgressBar(total=10, desc="train", disable=True) as bar:
        for i in range(10):
            bar.update(loss=torch.tensor(0.5), step=i)
        assert bar.n == 10
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_compact_rate_limited_postfix(capsys):
    bar = ProgressBar(total=5, desc="train", disable=False)
    bar.update(1, loss=0.123456789, episodes=3)
    assert bar.postfix == "loss=0.1235, episodes=3"
    bar.update(1, loss=2.0)  # within the refresh interval: not reformatted yet
    assert bar.postfix == "loss=0.1235, episodes=3"
    bar.close()
    assert bar.postfix == "loss=2, episodes=3"
    assert "loss=2, episodes=3" in capsys.readouterr().err


def test_graceful_interrupt_sets_flag_then_aborts_and_restores_handler():
    previous = signal.getsignal(signal.SIGINT)
    with GracefulInterrupt() as interrupt:
        assert not interrupt.requested
        signal.raise_signal(signal.SIGINT)
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous


def test_graceful_interrupt_is_a_noop_outside_main_thread():
    previous = signal.getsignal(signal.SIGINT)
    errors = []

    def worker():
        try:
            with GracefulInterrupt() as interrupt:
                assert not interrupt.requested
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert errors == [] and signal.getsignal(signal.SIGINT) is previous


def test_clip_grad_norm_matches_torch_bit_for_bit():
    from rlgen.training.optim import clip_grad_norm

    torch.manual_seed(0)
    ours, theirs = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), None
    theirs = copy.deepcopy(ours)
    x = torch.randn(8, 4)
    for scale in (1e-3, 1e3):  # below and above the threshold
        for model in (ours, theirs):
            model.zero_grad()
            (model(x).pow(2).sum() * scale).backward()
        expected = nn.utils.clip_grad_norm_(theirs.parameters(), 1.0, foreach=True)
        assert torch.equal(clip_grad_norm(ours.parameters(), 1.0), expected)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(a.grad, b.grad)
