"""The generative models by name: their config class and trainer, and ``make_config`` (as ``rlgen.dqn`` has)."""

from __future__ import annotations

from typing import Any

from rlgen.errors import UnknownNameError

MODELS = ("vae", "gan", "diffusion")


def model_parts(name: str) -> tuple[type, Any]:
    """(config class, train function) of a model name, imported only when asked for."""
    if name == "vae":
        from rlgen.generative.vae.config import VAEConfig
        from rlgen.generative.vae.train import train

        return VAEConfig, train
    if name == "gan":
        from rlgen.generative.wgan_gp.config import WGANGPConfig
        from rlgen.generative.wgan_gp.train import train

        return WGANGPConfig, train
    if name == "diffusion":
        from rlgen.generative.diffusion.config import DiffusionConfig
        from rlgen.generative.diffusion.train import train

        return DiffusionConfig, train
    raise UnknownNameError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def make_config(
    model: str,
    data: str | None = None,
    preset: str | None = None,
    config_file: str | None = None,
    overrides: list[str] | None = None,
    **fields: Any,
) -> Any:
    """The config of ``model``: preset (``agents/<model>.yml``, named after the dataset) < --config < --set < flags."""
    from rlgen.config import apply_overrides, from_dict, load_yaml, merge
    from rlgen.presets import get_preset, has_preset

    config_cls, _ = model_parts(model)
    name = preset or data or "digits"
    values = get_preset(model, name) if preset is not None or has_preset(model, name) else {}
    values["data"] = data or values.get("data") or name
    if config_file is not None:
        values = merge(values, load_yaml(config_file))
    config = from_dict(config_cls, values)
    config = apply_overrides(config, list(overrides or []))
    explicit = {key: value for key, value in fields.items() if value is not None}
    return apply_overrides(config, explicit) if explicit else config
