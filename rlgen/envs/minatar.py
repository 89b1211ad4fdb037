"""MinAtar observations made CNN-ready, and an rgb_array renderer that needs no seaborn."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

# A fixed palette: black background, then one colour per channel.
_PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]],
    dtype=np.uint8,
)


class MinAtarObservation(gym.ObservationWrapper):
    """(10, 10, C) bool grids -> (C, 10, 10) bool, channel-first for the CNN.

    They stay bool (not uint8) because rlgen's CNNs read uint8 as pixels and divide by 255.
    """

    def __init__(self, env: gym.Env, render_mode: str | None = None):
        super().__init__(env)
        self._render_mode = render_mode
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, shape=(c, h, w), dtype=np.bool_)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)), dtype=np.bool_)

    @property
    def render_mode(self) -> str | None:
        return self._render_mode

    def render(self) -> np.ndarray:
        state = self.env.unwrapped.game.state()  # (10, 10, C) bool
        channels = state.shape[-1]
        index = np.max(state * np.arange(1, channels + 1), axis=2)  # (10, 10)
        palette = _PALETTE[np.arange(channels + 1) % len(_PALETTE)]
        image = palette[index]  # (10, 10, 3)
        return np.kron(image, np.ones((16, 16, 1), dtype=np.uint8))  # 160x160 for video
