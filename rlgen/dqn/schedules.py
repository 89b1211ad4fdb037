"""Exploration schedules (SB3's ``exploration_*`` parameters)."""

from __future__ import annotations

import math

from rlgen.dqn.config import DQNConfig


def epsilon_at(config: DQNConfig, global_step: int) -> float:
    """Epsilon after ``global_step`` env steps: decays over ``exploration_fraction`` of the run.

    linear: SB3's ``get_linear_fn``. exponential: the same endpoints, with
    ``eps = final + (initial - final) * exp(-5 * progress)`` so it has fallen
    to within 1% of the gap at the end of the decay, then holds ``final``.
    """
    start, end = config.exploration_initial_eps, config.exploration_final_eps
    decay_steps = config.exploration_fraction * config.total_timesteps
    if decay_steps <= 0:
        return end
    progress = min(1.0, global_step / decay_steps)
    if config.exploration_schedule == "linear":
        return start + progress * (end - start)
    if progress >= 1.0:
        return end
    return end + (start - end) * math.exp(-5.0 * progress)
