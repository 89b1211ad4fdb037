"""``rlgen export``: a run's networks as ONNX files that onnxruntime runs, with what they need to know inside.

``torch.onnx.export`` (the torch.export-based exporter, opset 18 by default)
traces the wrappers of ``rlgen.export.wrappers`` with a dynamic batch axis; the
run's config, the observation shape and dtype, the action count, the input and
output names and the opset go into the model's metadata (``metadata_props``),
so ``rlgen eval --onnx`` and other runtimes can use the file on its own.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlgen import __version__
from rlgen.errors import InputError, RlgenError

DEFAULT_OPSET = 18
FORMATS = ("onnx",)


@dataclass
class ExportSpec:
    """One graph to export: the wrapper, example inputs, names, which axis of each input is the batch."""

    name: str  # file suffix and metadata kind, e.g. "q_policy", "vae_decoder"
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    batch_axes: dict[str, int]
    meta: dict[str, Any]


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (torch's exporter writes through it)
    except ImportError as exc:
        raise RlgenError(
            f"exporting needs the onnx extra ({exc.name} is not installed): pip install 'rlgen[onnx]'"
        ) from None


def dqn_specs(path: Path) -> list[ExportSpec]:
    from rlgen.dqn import DQNAgent
    from rlgen.dqn.recurrent_networks import RecurrentQNetwork, WindowQNetwork
    from rlgen.export.wrappers import (
        GRUQPolicy,
        LSTMQPolicy,
        QPolicy,
        WindowQPolicy,
    )

    agent = DQNAgent.load(path)
    q_net, config = agent.q_net.eval(), agent.config
    shape, dtype = agent.obs_space.shape, agent.obs_space.dtype
    obs = torch.as_tensor(agent.obs_space.sample()[None].repeat(2, axis=0))
    meta = {"env_id": config.env_id, "obs_shape": list(shape), "obs_dtype": str(dtype),
            "num_actions": agent.num_actions}
    starts = torch.zeros(2, dtype=torch.bool)
    if isinstance(q_net, RecurrentQNetwork):
        memory = q_net.initial_memory(2)
        parts = memory if isinstance(memory, tuple) else (memory,)
        names = ["h", "c"][: len(parts)]
        wrapper = LSTMQPolicy(q_net) if len(parts) == 2 else GRUQPolicy(q_net)
        return [ExportSpec("q_policy", wrapper,
                           {"obs": obs, "episode_start": starts, **dict(zip(names, parts))},
                           ["q", "action", *(f"{n}_out" for n in names)],
                           {"obs": 0, "episode_start": 0, **{n: 1 for n in names}},
                           {**meta, "policy": "recurrent", "state": names})]
    if isinstance(q_net, WindowQNetwork):
        window, padding = q_net.initial_memory(2)
        return [ExportSpec("q_policy", WindowQPolicy(q_net),
                           {"obs": obs, "episode_start": starts, "window": window, "padding": padding},
                           ["q", "action", "window_out", "padding_out"],
                           {"obs": 0, "episode_start": 0, "window": 0, "padding": 0},
                           {**meta, "policy": "window", "state": ["window", "padding"]})]
    return [ExportSpec("q_policy", QPolicy(q_net), {"obs": obs}, ["q", "action"], {"obs": 0},
                       {**meta, "policy": "feed_forward", "state": []})]


def generative_specs(algo: str, run: Path) -> list[ExportSpec]:
    from rlgen.export.wrappers import (
        ConditionalDenoiserStep,
        DenoiserStep,
        GeneratorImages,
        VAEDecoder,
        VAEEncoder,
    )

    cpu = torch.device("cpu")
    if algo == "gan":
        from rlgen.generative.wgan_gp.sample import load

        generator, config, meta = load(run, cpu)
        z = torch.zeros(2, config.latent_dim)
        return [ExportSpec("generator", GeneratorImages(generator), {"z": z}, ["images"], {"z": 0},
                           {"image_shape": meta["data"]["image_shape"], "latent_dim": config.latent_dim})]
    if algo == "vae":
        from rlgen.generative.vae.sample import load

        vae, config, meta = load(run, cpu)
        shape = meta["data"]["image_shape"]
        info = {"image_shape": shape, "latent_dim": config.latent_dim, "likelihood": config.likelihood}
        return [ExportSpec("vae_encoder", VAEEncoder(vae), {"images": torch.rand(2, *shape)}, ["mu", "logvar"],
                           {"images": 0}, info),
                ExportSpec("vae_decoder", VAEDecoder(vae, config.likelihood), {"z": torch.zeros(2, config.latent_dim)},
                           ["images"], {"z": 0}, info)]
    from rlgen.generative.diffusion.sample import load

    denoiser, config, meta, scheduler_config, _, codec = load(run, cpu)
    if codec is not None:
        raise InputError(f"{run} is a latent diffusion run; exporting its denoiser and VAE decoder together is not "
                         "supported yet (export the VAE run, and sample latent runs with `rlgen sample diffusion`)")
    shape = meta["data"]["image_shape"]
    inputs = {"sample": torch.randn(2, *shape), "timestep": torch.tensor([10, 500])}
    if config.class_conditional:
        inputs["class_labels"] = torch.tensor([0, 1])
    wrapper = ConditionalDenoiserStep(denoiser) if config.class_conditional else DenoiserStep(denoiser)
    return [ExportSpec("denoiser", wrapper, inputs, ["model_output"],
                       dict.fromkeys(inputs, 0),
                       {"image_shape": shape, "prediction_type": config.prediction_type,
                        "num_classes": meta["data"]["num_classes"] if config.class_conditional else 0,
                        "scheduler_config": dict(scheduler_config)})]


def export_run(run: str | Path, out: str | Path | None = None, *, fmt: str = "onnx",
               opset: int = DEFAULT_OPSET) -> list[Path]:
    """Export the networks of a run (directory or checkpoint) to ONNX; returns the files written.

    ``out`` is the file for a run with one graph (a Q-network, a generator, a denoiser),
    or the stem of the VAE's two (``<stem>_encoder.onnx``, ``<stem>_decoder.onnx``);
    default: beside the checkpoint, ``<run>/<graph>.onnx``.
    """
    from rlgen.dqn.agent import checkpoint_path
    from rlgen.training import checkpoint_info

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is not supported; rlgen exports {', '.join(FORMATS)}")
    if not 7 <= opset <= 23:
        raise InputError(f"--opset {opset} is outside the opsets torch's exporter writes (7-23); the default is 18")
    path = checkpoint_path(run)
    meta = checkpoint_info(path)["meta"]
    algo = meta.get("algo")
    if algo in ("dqn", "pqn"):
        specs = dqn_specs(path)
    elif algo in ("vae", "gan", "diffusion"):
        specs = generative_specs(algo, path.parent if path.name == "checkpoint.safetensors" else path)
    else:
        raise ExportError(f"{path} is a {algo!r} checkpoint; rlgen exports dqn, pqn, vae, gan and diffusion runs")
    _require_onnx()
    files = []
    for spec in specs:
        target = _target(path, out, spec.name, len(specs))
        _export(spec, target, opset, {"algo": algo, "config": meta.get("config", {}), "step": meta.get("step")})
        files.append(target)
    return files


class ExportError(RlgenError):
    """A run rlgen cannot export, or a network the exporter cannot trace."""


def _target(path: Path, out: str | Path | None, name: str, count: int) -> Path:
    if out is None:
        return path.parent / f"{name}.onnx"
    out = Path(out)
    if count == 1:
        return out if out.suffix == ".onnx" else out.with_name(out.name + ".onnx")
    stem = out.with_suffix("") if out.suffix == ".onnx" else out
    return stem.with_name(f"{stem.name}_{name.split('_')[-1]}.onnx")


def _export(spec: ExportSpec, target: Path, opset: int, run_meta: dict[str, Any]) -> None:
    import onnx

    batch = torch.export.Dim("batch", min=1, max=65536)
    # In input order (not by name): the wrappers' argument names need not match the ONNX input names.
    dynamic = tuple({spec.batch_axes[name]: batch} if name in spec.batch_axes else None for name in spec.inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with warnings.catch_warnings(), _quiet_exporter():
            warnings.simplefilter("ignore")
            try:
                program = torch.onnx.export(
                    spec.module.eval(), tuple(spec.inputs.values()), input_names=list(spec.inputs),
                    output_names=spec.outputs, opset_version=opset, dynamo=True, dynamic_shapes=dynamic,
                    external_data=False,
                )
            except Exception as exc:  # the exporter's own error types; `rlgen --debug export` shows its report
                raise ExportError(
                    f"the {spec.name} of this run cannot be exported to ONNX: {_reason(exc)} "
                    "(rlgen --debug export ... shows the exporter's full report)"
                ) from exc
        model = program.model_proto
        props = {  # every value JSON, so a reader decodes them all the same way
            "rlgen_version": __version__, "rlgen_graph": spec.name, "opset": opset,
            "inputs": list(spec.inputs), "outputs": spec.outputs, "algo": run_meta["algo"], "step": run_meta["step"],
            "config": run_meta["config"], **spec.meta,
        }
        for key, value in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value)
        onnx.save(model, str(tmp))
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _reason(exc: Exception) -> str:
    """The line of torch's exporter report that says what failed."""
    for line in str(exc).splitlines():
        if line.startswith("<class "):
            return line.split(">: ", 1)[-1][:300]
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


class _quiet_exporter:
    """torch's exporter reports every stage on stdout and stderr (graphs included); keep them out of the terminal."""

    def __enter__(self):
        self._loggers = {name: logging.getLogger(name) for name in ("torch.onnx", "torch.fx", "torch._dynamo")}
        self._levels = {name: logger.level for name, logger in self._loggers.items()}
        for logger in self._loggers.values():
            logger.setLevel(logging.ERROR)  # "torchvision is not installed", symbolic-shape notes
        self._streams = contextlib.ExitStack()
        self._streams.enter_context(contextlib.redirect_stdout(io.StringIO()))
        self._streams.enter_context(contextlib.redirect_stderr(io.StringIO()))
        return self

    def __exit__(self, *exc):
        self._streams.close()
        for name, logger in self._loggers.items():
            logger.setLevel(self._levels[name])
