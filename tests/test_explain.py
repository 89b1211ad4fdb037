"""rlgen explain: saliency finds the pixel a network reads, attention comes out as set, traversals vary one dimension."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from rlgen.backbones import BackboneConfig, build_backbone
from rlgen.cli.main import cli
from rlgen.dqn.recurrent_networks import WindowQNetwork
from rlgen.explain.attention import attention_picture, episode_attention
from rlgen.explain.saliency import grad_cam, gradient_saliency, overlay
from rlgen.explain.traversal import traversal_latents


class OnePixel(nn.Module):
    """Q(s, 0) = 2 * s[channel 1, row 3, column 5]; Q(s, 1) = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = 2.0 * x[:, 1, 3, 5]
        return torch.stack([value, torch.zeros_like(value)], dim=1)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.bool_])
def test_saliency_of_a_network_that_reads_one_pixel_is_all_on_that_pixel(dtype):
    rng = np.random.default_rng(0)
    obs = (rng.random((4, 3, 8, 8)) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    maps = gradient_saliency(OnePixel(), obs, np.zeros(4, dtype=np.int64))  # (T, H, W)
    expected = torch.zeros(4, 8, 8)
    expected[:, 3, 5] = 1.0
    assert torch.equal(maps, expected)
    assert torch.equal(gradient_saliency(OnePixel(), obs, np.ones(4, dtype=np.int64)), torch.zeros(4, 8, 8))


def test_grad_cam_lights_up_where_the_used_feature_map_is_active():
    conv = nn.Conv2d(1, 2, kernel_size=1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)  # channel 0 = x, channel 1 = 1 - x
        conv.bias[:] = torch.tensor([0.0, 1.0])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            features = self.conv(x)  # (B, 2, 8, 8)
            q0 = features[:, 0].mean(dim=(1, 2))  # only channel 0 matters
            return torch.stack([q0, torch.zeros_like(q0)], dim=1)

    obs = torch.zeros(2, 1, 8, 8)
    obs[:, :, :, :4] = 1.0  # the left half is on
    cam = grad_cam(Net(), obs, np.zeros(2, dtype=np.int64))
    assert torch.allclose(cam[:, :, :4], torch.ones(2, 8, 4)) and torch.equal(cam[:, :, 4:], torch.zeros(2, 8, 4))


def test_overlay_keeps_the_frame_where_the_map_is_zero_and_colours_it_where_it_is_one():
    frames = np.full((1, 16, 16, 3), 100, dtype=np.uint8)
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0] = 1.0
    out = overlay(frames, maps)
    assert (out[0, 12:, 12:] == 100).all()  # far from the hot cell: the frame itself
    assert (out[0, 0, 0] == int(0.4 * 100 + 0.6 * 255)).all()  # the hot cell: 60% of the white end of the map


def test_attention_maps_of_a_transformer_with_hand_set_weights_come_out_as_set():
    backbone = build_backbone(BackboneConfig(kind="transformer", d_model=8, n_heads=2, n_layers=1), (3,))
    q_net = WindowQNetwork(backbone, num_actions=2, context_length=4)
    with torch.no_grad():
        backbone.blocks[0].qkv.weight[:16] = 0.0  # queries and keys all zero: every allowed key scores the same
        backbone.blocks[0].qkv.bias[:16] = 0.0
    episode = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    weights = episode_attention(q_net, episode)  # (T, layers, heads, K)
    assert weights.shape == (6, 1, 2, 4)
    for t in range(6):
        seen = min(t + 1, 4)  # the window holds this episode's last `seen` steps, the rest is padding
        expected = torch.zeros(4)
        expected[4 - seen:] = 1.0 / seen
        for head in range(2):
            torch.testing.assert_close(weights[t, 0, head], expected)
    picture = attention_picture(weights, cell=5, gap=2)
    assert picture.shape == (6 * 5, 3 * 4 * 5 + 2 * 2, 3)  # heads averaged, then each of the two heads


def test_traversal_rows_differ_only_in_their_dimension():
    base = torch.tensor([0.5, -1.0, 2.0])
    latents = traversal_latents(3, steps=5, span=2.0, base=base).view(3, 5, 3)
    values = torch.linspace(-2.0, 2.0, 5)
    for d in range(3):
        torch.testing.assert_close(latents[d, :, d], values)
        others = [j for j in range(3) if j != d]
        assert torch.equal(latents[d][:, others], base[others].expand(5, 2))


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_explain_writes_saliency_gradcam_and_strip_for_an_image_agent(tmp_path):
    from rlgen.dqn import DQNAgent, DQNConfig
    from rlgen.dqn.networks import build_network

    config = DQNConfig(env_id="MinAtar/Breakout-v1", backbone={"kind": "small_cnn", "channels": [4], "features_dim": 8})
    space = gym.spaces.Box(0, 1, (4, 10, 10), np.bool_)
    path = DQNAgent(config, build_network(config, space, 3), space).save(tmp_path / "agent.safetensors")
    result = _invoke("explain", path, "--max-steps", "30", "--out", tmp_path / "out", "--frames", "4")
    assert result.exit_code == 0, result.output
    gif = Image.open(tmp_path / "out" / "saliency.gif")
    assert gif.n_frames > 1 and gif.size == (160, 160)  # MinAtar frames are 160 x 160
    strip = Image.open(tmp_path / "out" / "saliency.png")
    assert strip.size == (4 * 160 + 3 * 4, 3 * 160 + 2 * 4)  # frames, saliency, Grad-CAM rows
    assert (tmp_path / "out" / "gradcam.gif").is_file() and list((tmp_path / "out").glob("events.out.tfevents.*"))


def test_explain_a_vae_draws_one_row_per_latent_dimension(tmp_path):
    result = _invoke("train", "vae", "--data", "digits", "--steps", "2", "--batch-size", "16", "--device", "cpu",
                     "--quiet", "--logdir", tmp_path, "--set", "eval_samples=0", "--set", "latent_dim=3",
                     "--set", "nll_samples=2", "--set", "eval_images=20", "--set", "sample_interval=0")
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.glob("digits__vae__*")
    assert _invoke("explain", run, "--steps", "5").exit_code == 0
    grid = Image.open(run / "explain" / "traversal.png")
    assert grid.size[0] > grid.size[1]  # 5 columns of 8x8 digits, 3 rows


def test_explain_says_in_one_line_what_it_cannot_show(tmp_path):
    from rlgen.dqn import DQNAgent, DQNConfig
    from rlgen.dqn.networks import build_network

    config = DQNConfig(env_id="CartPole-v1")
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    path = DQNAgent(config, build_network(config, space, 2), space).save(tmp_path / "mlp.safetensors")
    for args, fragment in [([path], "vector observations (4,)"), ([path, "--video", "avi"], "--video 'avi'")]:
        result = _invoke("explain", *args)
        assert result.exit_code == 2 and fragment in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
