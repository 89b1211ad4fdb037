"""Every preset in agents/ builds a valid config (a bad field or value would fail before any step)."""

from __future__ import annotations

import pytest

from rlgen.presets import list_presets, load_presets

CASES = [(algo, name) for algo, names in list_presets().items() for name in names]


@pytest.mark.parametrize("algo, name", CASES)
def test_every_preset_builds_a_valid_config(algo, name):
    if algo in ("dqn", "pqn"):
        from rlgen.dqn import make_config

        env_id = load_presets(algo)[name].get("env_id", name)
        config = make_config(env_id, name, algo=algo)
        assert config.env_id == env_id
        return
    from rlgen.generative.configs import make_config

    preset = load_presets(algo)[name]
    # A latent diffusion preset names its VAE run on the command line; any name passes the config check.
    extra = ["vae_run=runs/some-vae"] if preset.get("denoiser") == "mlp" else []
    config = make_config(algo, None, name, None, extra)
    assert config.steps >= 1
