"""DQN and its extensions (double, dueling, n-step, prioritized replay) for Gymnasium."""

from rlgen.dqn.agent import DQNAgent, make_config
from rlgen.dqn.config import DQNConfig

__all__ = ["DQNAgent", "DQNConfig", "make_config"]
