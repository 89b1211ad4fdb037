"""rlgen backbones inside Stable-Baselines3: DQN learns through RlgenFeaturesExtractor."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.preprocessing import preprocess_obs

from rlgen.backbones import MLP, BackboneConfig, build_backbone
from rlgen.backbones.cnn import CNN
from rlgen.sb3 import RlgenFeaturesExtractor



def test_sb3_dqn_learns_cartpole_through_an_rlgen_mlp():
    policy_kwargs = dict(
        features_extractor_class=RlgenFeaturesExtractor,
        features_extractor_kwargs=dict(backbone={"kind": "mlp", "hidden_sizes": [64]}),
        net_arch=[64],
    )
    # RL Zoo's CartPole-v1 hyperparameters on a 6k-step budget (about 5-10 s here).
    model = DQN("MlpPolicy", "CartPole-v1", learning_rate=2.3e-3, batch_size=64, buffer_size=10_000,
                learning_starts=500, gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=64,
                exploration_fraction=0.2, exploration_final_eps=0.04, policy_kwargs=policy_kwargs, seed=0,
                device="cpu")
    for net in (model.q_net, model.q_net_target):
        assert isinstance(net.features_extractor, RlgenFeaturesExtractor)
        assert isinstance(net.features_extractor.backbone, MLP)
        assert net.features_extractor.features_dim == 64
    model.learn(6_000)
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=10, deterministic=True)
    assert mean > 3 * 22.3  # a random policy scores about 22


class SideBandit(gym.Env):
    """One-step episodes: a bright patch on the left or right of a (12, 12, 1) uint8 image; act on its side.

    Channel-last on purpose: SB3 transposes it to (1, 12, 12) before the extractor sees it.
    """

    def __init__(self):
        self.observation_space = gym.spaces.Box(0, 255, (12, 12, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.side = int(self.np_random.integers(2))
        image = self.np_random.integers(0, 40, size=(12, 12, 1), dtype=np.uint8)  # background noise
        row = int(self.np_random.integers(0, 9))
        col = int(self.np_random.integers(0, 3)) + 6 * self.side
        image[row : row + 3, col : col + 3] = 255
        return image, {}

    def step(self, action):
        reward = float(action == self.side)
        return self.reset()[0], reward, True, False, {}


def test_sb3_dqn_with_an_rlgen_cnn_on_small_images():
    backbone = {"kind": "small_cnn", "channels": [8, 16], "features_dim": 32}
    model = DQN("CnnPolicy", SideBandit(), learning_rate=1e-3, batch_size=32, buffer_size=2_000,
                learning_starts=100, train_freq=1, gradient_steps=1, target_update_interval=50,
                exploration_fraction=0.3, exploration_final_eps=0.02, gamma=0.0, seed=0, device="cpu",
                policy_kwargs=dict(features_extractor_class=RlgenFeaturesExtractor,
                                   features_extractor_kwargs=dict(backbone=backbone), net_arch=[]))
    extractor = model.q_net.features_extractor
    assert isinstance(extractor.backbone, CNN) and extractor.features_dim == 32
    assert extractor.backbone.spec.shape == (1, 12, 12)  # SB3 made it channel-first

    # SB3 scales uint8 images by 1/255 and passes floats; rlgen CNNs scale only uint8 input,
    # so the features equal those of the same backbone fed the raw uint8 frames.
    space = model.observation_space
    frames = torch.as_tensor(np.stack([space.sample() for _ in range(5)]))  # (5, 1, 12, 12) uint8
    with torch.no_grad():
        through_sb3 = extractor(preprocess_obs(frames, space, normalize_images=True))
        raw = extractor.backbone(frames)
    torch.testing.assert_close(through_sb3, raw)

    model.learn(600)
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=100, deterministic=True)
    assert mean > 0.9  # picks the lit side; chance is 0.5


def test_extractor_accepts_a_config_and_discrete_observations():
    config = BackboneConfig(kind="mlp", hidden_sizes=[8], activation="tanh")
    extractor = RlgenFeaturesExtractor(gym.spaces.Box(-1, 1, (3,), np.float32), backbone=config)
    assert extractor.backbone_config is config and extractor.features_dim == 8

    # SB3 hands Discrete observations over one-hot encoded, so the backbone takes (B, n) floats.
    space = gym.spaces.Discrete(5)
    extractor = RlgenFeaturesExtractor(space, backbone={"kind": "mlp", "hidden_sizes": [4]})
    obs = preprocess_obs(torch.tensor([0, 3, 4]), space)
    assert extractor(obs).shape == (3, 4)
    reference = build_backbone(BackboneConfig(kind="mlp", hidden_sizes=[4]), (5,))
    reference.load_state_dict(extractor.backbone.state_dict())
    torch.testing.assert_close(extractor(obs), reference(obs))


@pytest.mark.parametrize("space, backbone, message", [
    (gym.spaces.Box(0, 1, (4,), np.float32), {"kind": "lstm"}, "sequences"),
    (gym.spaces.Box(0, 1, (4,), np.float32), {"kind": "mlp", "hidden_sizes": [0]}, "hidden_sizes"),
    (gym.spaces.Box(0, 1, (4,), np.float32), {"kind": "mpl"}, "kind"),
    (gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), {"kind": "mlp"}, "CombinedExtractor"),
    (gym.spaces.Box(0, 255, (2, 2, 1), np.uint8), {"kind": "nature_cnn"}, "nature_cnn expects"),
])
def test_extractor_rejects_what_it_cannot_build_with_a_clear_error(space, backbone, message):
    with pytest.raises(ValueError, match=message):
        RlgenFeaturesExtractor(space, backbone=backbone)
