"""Q(lambda) returns over a rollout, computed backwards (Watkins / Peng's Q(lambda) as PQN uses it).

Under gymnasium 1.x next-step autoreset a copy's rollout column holds, after an
episode's last step, one autoreset step (its action ignored, its observation the
first of the next episode); that step is no transition and is masked out. The
observation after a truncated step is the episode's real final observation, so
a truncation bootstraps from it; a termination does not bootstrap.
"""

from __future__ import annotations

import torch


def q_lambda_returns(
    rewards: torch.Tensor,
    terminations: torch.Tensor,
    truncations: torch.Tensor,
    next_max_q: torch.Tensor,
    gamma: float,
    q_lambda: float,
) -> torch.Tensor:
    """Targets G (T, N) of the rollout's T steps over N copies.

    Args:
        rewards, terminations, truncations: (T, N) what step t returned.
        next_max_q: (T, N) max_a Q(s_{t+1}, a), s_{t+1} the observation step t returned.
        gamma, q_lambda: discount and lambda.

    G_t = r_t                                              if step t terminated
    G_t = r_t + gamma * max Q(s_{t+1})                     if it was truncated, or t is the rollout's last
    G_t = r_t + gamma * ((1 - lambda) max Q(s_{t+1}) + lambda G_{t+1})   otherwise
    """
    steps = rewards.shape[0]
    returns = torch.empty_like(next_max_q)
    bootstrap = next_max_q[-1]
    for t in reversed(range(steps)):
        one_step = next_max_q[t]
        if t < steps - 1:
            continued = (1.0 - q_lambda) * one_step + q_lambda * returns[t + 1]
            bootstrap = torch.where(truncations[t], one_step, continued)
        else:
            bootstrap = one_step
        returns[t] = rewards[t] + gamma * torch.where(terminations[t], torch.zeros_like(bootstrap), bootstrap)
    return returns
