"""The evaluation worker: ``python -m rlgen.dqn.eval_worker``, started by ``rlgen.dqn.evaluations``.

It reads one JSON request a line on stdin (the run's config, its observation space and
action count, how many episodes on which seed, and a safetensors file of the Q-network's
weights), plays the episodes exactly as ``rlgen.dqn.evaluate.evaluate_policy`` does in the
training process, deletes the weights file and answers one JSON line on stdout. It exits
when stdin closes (the training process finished or died). An error ends it with its
traceback on stderr; the training process then raises.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file

from rlgen.config import from_dict
from rlgen.dqn.evaluate import evaluate_policy
from rlgen.dqn.networks import build_network
from rlgen.dqn.resume import config_classes


def evaluate_request(request: dict[str, Any], networks: dict[str, torch.nn.Module]) -> dict[str, float]:
    """Play one request's episodes; ``networks`` caches one built Q-network per config."""
    key = json.dumps([request["algo"], request["config"], request["obs_shape"], request["obs_dtype"],
                      request["num_actions"]], sort_keys=True)
    if key not in networks:
        config = from_dict(config_classes()[request["algo"]], request["config"])
        obs_space = gym.spaces.Box(0, 1, shape=tuple(request["obs_shape"]), dtype=np.dtype(request["obs_dtype"]))
        networks[key] = build_network(config, obs_space, request["num_actions"])
    q_net = networks[key]
    q_net.load_state_dict(load_file(request["weights"]))
    os.unlink(request["weights"])
    mean, std = evaluate_policy(q_net, request["config"]["env_id"], request["episodes"], seed=request["seed"])
    return {"mean": mean, "std": std}


def serve() -> None:
    torch.set_num_threads(1)  # the training process runs on one thread on the other core
    networks: dict[str, torch.nn.Module] = {}
    for line in sys.stdin:
        reply = evaluate_request(json.loads(line), networks)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
