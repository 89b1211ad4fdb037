"""Exported Q-policies run by onnxruntime, acting like rlgen's actors: numpy in, numpy out, no torch.

``OnnxPolicy`` reads what it needs from the file's metadata (observation dtype,
state inputs) and keeps a recurrent policy's state between calls, cleared
where an episode starts, exactly as ``rlgen.dqn.actors.SequenceActor`` does, so
``rlgen.dqn.evaluate.play_episodes`` plays it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.dqn.actors import _DoneFlags, epsilon_greedy
from rlgen.errors import CheckpointError, RlgenError

_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The rlgen metadata of an exported file, JSON values decoded."""
    session = _session(path)
    return _decoded(session.get_modelmeta().custom_metadata_map)


def _decoded(raw: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _session(path: str | Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise RlgenError("running an exported policy needs onnxruntime: pip install 'rlgen[onnx]'") from None
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--onnx {path} does not exist; export one with: rlgen export RUN_DIR")
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own error types for files it cannot read
        raise CheckpointError(f"{path} is not an ONNX model onnxruntime can load ({str(exc).splitlines()[0][:200]})") from None


class OnnxPolicy(_DoneFlags):
    """An exported DQN policy (``rlgen export``) for ``num_envs`` copies, run by onnxruntime.

    Args:
        path: the ``q_policy.onnx`` file.
        num_envs: copies acted for (the graph's batch axis is dynamic).
    """

    def __init__(self, path: str | Path, num_envs: int):
        self.session = _session(path)
        self.meta = _decoded(self.session.get_modelmeta().custom_metadata_map)
        if self.meta.get("rlgen_graph") != "q_policy":
            raise CheckpointError(f"{path} is not an exported rlgen Q-policy (graph {self.meta.get('rlgen_graph')!r}); "
                                  "export a DQN run with: rlgen export RUN_DIR")
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.obs_dtype = _ONNX_TYPES[self.inputs["obs"].type]
        self.state_names = list(self.meta.get("state", []))
        self.num_envs, self.num_actions = num_envs, int(self.meta["num_actions"])
        self.env_id = self.meta["env_id"]
        self.reset()

    def reset(self) -> None:
        """Every copy's memory starts empty (zeros; a transformer's window all padding)."""
        self.state = {}
        for name in self.state_names:
            spec = self.inputs[name]
            shape = [self.num_envs if not isinstance(d, int) else d for d in spec.shape]
            fill = name == "padding"  # an empty context window is all padding
            self.state[name] = np.full(shape, fill, dtype=_ONNX_TYPES[spec.type])
        super().reset()

    def _step(self, obs: np.ndarray) -> list[np.ndarray]:
        """Run the graph for one vector step; a recurrent policy's memory moves on."""
        feeds = {"obs": np.asarray(obs, dtype=self.obs_dtype)}
        if self.state_names:
            feeds["episode_start"] = self.starts
            feeds.update(self.state)
        outputs = self.session.run(None, feeds)
        self.state.update(zip(self.state_names, outputs[2:]))
        return outputs

    def act(self, obs: np.ndarray, epsilon: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions (N,) for observations (N, *obs); greedy when ``rng`` is None."""
        greedy = self._step(obs)[1]
        return greedy if rng is None else epsilon_greedy(greedy, epsilon, rng, self.num_actions)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q-values (N, A) of one step."""
        return self._step(obs)[0]


def evaluate_onnx(path: str | Path, episodes: int, *, env_id: str | None = None, seed: int = 0,
                  epsilon: float = 0.0, max_envs: int = 100) -> tuple[str, float, float]:
    """(env id, mean, std) of an exported policy's return over ``episodes`` episodes, on the same
    environments and seeds as ``rlgen.dqn.evaluate.evaluate_policy``."""
    from rlgen.dqn.evaluate import num_eval_envs, play_episodes
    from rlgen.envs import make_vector_env

    if episodes < 1:
        raise RlgenError(f"--episodes {episodes} must be >= 1")
    if not 0.0 <= epsilon <= 1.0:
        raise RlgenError(f"--epsilon {epsilon} must be in [0, 1] (0 = greedy)")
    num_envs = num_eval_envs(episodes, max_envs)
    policy = OnnxPolicy(path, num_envs)
    env_id = env_id or policy.env_id
    envs = make_vector_env(env_id, num_envs, seed=seed, training=False)
    mean, std = play_episodes(policy, envs, episodes, seed=seed, epsilon=epsilon)
    return env_id, mean, std
