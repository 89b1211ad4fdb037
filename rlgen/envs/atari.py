"""Atari-specific wrappers that gymnasium does not ship."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class EpisodicLife(gym.Wrapper):
    """Report a lost life as a termination, but only reset the game when it is really over.

    gymnasium's ``AtariPreprocessing(terminal_on_life_loss=True)`` resets the
    whole game after every lost life, which changes the state distribution the
    agent sees; the DQN papers continue the game instead (a no-op step).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class ClipRewardSign(gym.RewardWrapper):
    """Clip rewards to {-1, 0, +1} as in the Nature DQN."""

    def reward(self, reward: float) -> float:
        return float(np.sign(reward))
