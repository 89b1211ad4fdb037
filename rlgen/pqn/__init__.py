"""PQN, parallel Q-learning (Gallici et al. 2024): no replay, no target network, LayerNorm, Q(lambda)."""

from rlgen.pqn.config import PQNConfig

__all__ = ["PQNConfig"]
