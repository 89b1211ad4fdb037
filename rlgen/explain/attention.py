"""What a transformer Q-network attends to: the newest step's attention over its context window, per step."""

from __future__ import annotations

import numpy as np
import torch

from rlgen.dqn.recurrent_networks import WindowQNetwork
from rlgen.explain.saliency import heat_colours


@torch.no_grad()
def episode_attention(q_net: WindowQNetwork, observations: np.ndarray) -> torch.Tensor:
    """Attention of the newest query over its window at each step of one episode.

    Args:
        observations: (T, *obs) one episode, in order.

    Returns:
        (T, layers, heads, K) weights over the window (oldest position first; padding gets 0).
    """
    q_net.eval()
    window, padding = q_net.initial_memory(1)
    starts = torch.ones(1, dtype=torch.bool)
    rows = []
    for obs in torch.as_tensor(observations):
        _, (window, padding) = q_net.act(obs[None], (window, padding), starts)
        starts = torch.zeros(1, dtype=torch.bool)
        weights: list[torch.Tensor] = []
        q_net.backbone(window, padding, attention=weights)
        rows.append(torch.stack([w[0, :, -1] for w in weights]))  # (layers, heads, K): the newest query's row
    return torch.stack(rows)  # (T, layers, heads, K)


def attention_picture(weights: torch.Tensor, cell: int = 12, gap: int = 6) -> np.ndarray:
    """(T, layers, heads, K) -> an RGB picture: per layer, heads averaged then each head, side by side.

    Each panel has one row per step (time runs down) and one column per window
    position (the newest on the right); brighter is more attention.
    """
    steps, layers, heads, k = weights.shape
    panels = []
    for layer in range(layers):
        maps = [weights[:, layer].mean(dim=1)] + [weights[:, layer, h] for h in range(heads)]  # each (T, K)
        for m in maps:
            block = heat_colours(m.numpy() / max(float(m.max()), 1e-12))  # (T, K, 3)
            panels.append(np.kron(block, np.ones((cell, cell, 1), dtype=np.uint8)))
    height = steps * cell
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    out = [panels[0]]
    for panel in panels[1:]:
        out += [spacer, panel]
    return np.concatenate(out, axis=1)
