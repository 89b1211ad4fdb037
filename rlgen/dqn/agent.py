"""The DQN Python API for notebooks: build a config, train, load, predict, evaluate, save.

    >>> from rlgen.dqn import DQNAgent
    >>> agent = DQNAgent.train("CartPole-v1")            # its preset from agents/dqn.yml
    >>> agent.evaluate(episodes=100)                     # (mean, std)
    >>> agent = DQNAgent.load("runs/CartPole-v1__dqn__0__1700000000")
    >>> action = agent.predict(obs)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen.config import (
    from_dict,
    load_yaml,
    merge,
    nest_overrides,
    parse_override,
    to_dict,
)
from rlgen.dqn.actors import SequenceActor
from rlgen.dqn.config import DQNConfig
from rlgen.dqn.evaluate import evaluate_policy
from rlgen.dqn.networks import QNetwork, build_network
from rlgen.dqn.recurrent_networks import is_sequence_config
from rlgen.dqn.resume import read_header
from rlgen.envs import get_spec
from rlgen.errors import CheckpointError, InputError
from rlgen.presets import get_preset, has_preset
from rlgen.training import load_checkpoint, resolve_device, save_checkpoint


def make_config(
    env_id: str,
    preset: str | None = None,
    *,
    config_file: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    algo: str = "dqn",
    **fields: Any,
):
    """Preset (or the family defaults), then a YAML file, then ``fields``, then ``--set`` overrides.

    ``algo`` is ``dqn`` (a ``DQNConfig`` from ``agents/dqn.yml``) or ``pqn`` (``PQNConfig``, ``agents/pqn.yml``).
    """
    from rlgen.dqn.resume import config_classes

    config_cls = config_classes()[algo]
    data: dict[str, Any] = {}
    spec = get_spec(env_id)  # unknown ids fail here, with suggestions
    if preset is not None or has_preset(algo, env_id):
        data = get_preset(algo, preset or env_id)
        # A preset named like an env id belongs to that env.
        preset_env = data.get("env_id", preset if preset is not None else env_id)
        if preset is not None and preset_env != env_id:
            raise InputError(f"preset {preset!r} is for {preset_env}, not {env_id}")
    else:
        data = {"backbone": {"kind": spec.backbone, **({"layer_norm": True} if algo == "pqn" else {})}}
    if config_file is not None:
        data = merge(data, load_yaml(config_file))
    data = merge(data, {k: v for k, v in fields.items() if v is not None})
    data["env_id"] = env_id
    if overrides:
        pairs = dict(overrides) if isinstance(overrides, dict) else dict(parse_override(o) for o in overrides)
        if isinstance(pairs.get("backbone"), str):  # --set backbone=lstm names the kind
            pairs["backbone.kind"] = pairs.pop("backbone")
        if "env_id" in pairs:
            raise InputError("env_id cannot be --set; give it as the ENV_ID argument")
        data = merge(data, nest_overrides(pairs))
    return from_dict(config_cls, data)


class DQNAgent:
    """A trained (or loaded) Q-network with the config it was trained with."""

    def __init__(self, config: DQNConfig, q_net: QNetwork, obs_space: gym.spaces.Box,
                 device: torch.device | str = "cpu", run_dir: Path | None = None):
        self.config = config
        self.obs_space = obs_space
        self.q_net = q_net.to(device).eval()
        self.device = torch.device(device)
        self.run_dir = run_dir
        self.last_result = None
        self._actor = None  # memory agents: the SequenceActor behind predict()

    @classmethod
    def train(cls, env_id: str, preset: str | None = None, *, device: str = "auto", logdir: str | Path = "runs",
              progress: bool = False, overrides: list[str] | dict[str, Any] | None = None, **fields: Any) -> DQNAgent:
        """Train from a preset plus field overrides (``total_timesteps=10_000``...)."""
        config = make_config(env_id, preset, overrides=overrides, **fields)
        result = train_function(config)(config, device=device, logdir=logdir, progress=progress)
        agent = cls.load(result.checkpoint, device=device)
        agent.last_result = result
        return agent

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> DQNAgent:
        """Rebuild the Q-network from a checkpoint's own config (a run dir or a .safetensors file)."""
        path = checkpoint_path(path)
        header = read_header(path)  # checked against the stored tensors before anything is built
        config, obs_space = header.config, header.obs_space
        q_net = build_network(config, obs_space, header.num_actions)
        load_checkpoint(path, map_location="cpu").load_module("q_net", q_net)
        torch_device = resolve_device(device)
        return cls(config, q_net, obs_space, torch_device, run_dir=path.parent)

    def predict(self, obs: np.ndarray, deterministic: bool = True, epsilon: float = 0.05,
                episode_start: np.ndarray | bool | None = None) -> np.ndarray:
        """Greedy actions for a batch (B, *obs_shape) or one observation; epsilon-greedy otherwise.

        Agents with memory (lstm / gru / transformer) remember earlier calls: pass
        ``episode_start`` (bool, or (B,) bools) True for an episode's first observation,
        or call ``reset()`` between episodes. A new batch size starts afresh.
        """
        obs = np.asarray(obs)
        single = obs.shape == self.obs_space.shape
        batch = obs[None] if single else obs
        actions = self._q_values(batch, episode_start).argmax(dim=1).cpu().numpy()
        if not deterministic:
            explore = np.random.random(len(actions)) < epsilon
            actions = np.where(explore, np.random.randint(self.num_actions, size=len(actions)), actions)
        return actions[0] if single else actions

    @property
    def is_sequence(self) -> bool:
        """True for Q-networks with memory (lstm / gru / transformer backbones)."""
        return is_sequence_config(self.config)

    def reset(self) -> None:
        """Forget what a memory agent saw in earlier ``predict`` calls (no-op for feed-forward agents)."""
        self._actor = None

    def _q_values(self, batch: np.ndarray, episode_start: np.ndarray | bool | None) -> torch.Tensor:
        if not self.is_sequence:
            with torch.inference_mode():
                return self.q_net(torch.as_tensor(batch, device=self.device))
        actor = self._actor
        fresh = actor is None or actor.num_envs != len(batch)
        if fresh:
            actor = self._actor = SequenceActor(self.q_net, len(batch), self.device)
        starts = np.broadcast_to(np.asarray(fresh if episode_start is None else episode_start, dtype=bool),
                                 (len(batch),))
        return actor.step(batch, starts | fresh)

    @property
    def num_actions(self) -> int:
        return self.q_net.num_actions

    def evaluate(self, episodes: int = 100, seed: int = 0, epsilon: float = 0.0) -> tuple[float, float]:
        """Mean and std of the greedy (or epsilon-greedy) return over ``episodes`` episodes."""
        return evaluate_policy(self.q_net, self.config.env_id, episodes, seed=seed, device=self.device,
                               epsilon=epsilon)

    def record_episode(self, seed: int = 0) -> tuple[np.ndarray, float]:
        """One greedy episode rendered as frames (T, H, W, 3) uint8, and its return."""
        from rlgen.dqn.video import record_episode

        return record_episode(self.q_net, self.config.env_id, seed=seed, device=self.device)

    def save(self, path: str | Path) -> Path:
        """Write the Q-network and config (safetensors + JSON header) to ``path``."""
        from rlgen.dqn.resume import algo_of

        return save_checkpoint(
            Path(path), modules={"q_net": self.q_net},
            meta={"algo": algo_of(self.config), "config": to_dict(self.config), "step": 0,
                  "num_actions": self.num_actions, "obs_shape": list(self.obs_space.shape),
                  "obs_dtype": str(self.obs_space.dtype)},
        )


def train_function(config):
    """The training loop for ``config``: ``rlgen.dqn.train.train`` (every DQN Q-network) or ``rlgen.pqn.train.train``."""
    from rlgen.pqn.config import PQNConfig

    if isinstance(config, PQNConfig):
        from rlgen.pqn.train import train
    else:
        from rlgen.dqn.train import train
    return train


def checkpoint_path(path: str | Path) -> Path:
    """A run directory means its ``checkpoint.safetensors``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}; pass a run directory (runs/<run>) or a .safetensors file "
            "written by `rlgen train-dqn`"
        )
    return path
