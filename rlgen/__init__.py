"""rlgen: deep RL (DQN family) and generative models on one shared backbone package."""

__version__ = "0.1.0"
