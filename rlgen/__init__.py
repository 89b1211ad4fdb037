"""rlgen: deep RL (DQN family) and generative models on one shared backbone package.

Importing rlgen registers its environments under gymnasium's ``rlgen/`` namespace
(gymnasium 1.x's convention, as ``ale_py`` does), so::

    import gymnasium as gym
    import rlgen

    gym.register_envs(rlgen)
    env = gym.make("rlgen/CartPoleNoVel-v0")
"""

__version__ = "0.1.0"

from rlgen.envs import memory as _memory  # noqa: E402,F401  (registers the rlgen/ environments)
