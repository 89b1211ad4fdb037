"""Behaviour of the shared backbones: they learn, masks mask, resets reset, bad shapes fail clearly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlgen.backbones import BackboneConfig, build_backbone, is_recurrent, is_sequence_model
from rlgen.config import apply_overrides, from_dict

VOCAB, SEQ_LEN = 4, 10


def _train(net: nn.Module, head: nn.Module, features, batches, steps: int, lr: float) -> None:
    """Adam on cross-entropy of head(features(x)) for ``steps`` batches."""
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=lr)
    for _ in range(steps):
        x, y = next(batches)
        loss = nn.functional.cross_entropy(head(features(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _accuracy(head: nn.Module, features, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (head(features(x)).argmax(dim=1) == y).float().mean().item()


# --- learning ---------------------------------------------------------------------------------


def test_small_cnn_learns_digits():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y))
    train, test = perm[:1400], perm[1400:]
    net = build_backbone(BackboneConfig(kind="small_cnn", channels=[16, 32], features_dim=64), (1, 8, 8))
    head = nn.Linear(net.out_dim, 10)

    def batches():
        while True:
            idx = train[torch.randint(0, len(train), (64,))]
            yield x[idx], y[idx]

    _train(net, head, net, batches(), steps=200, lr=3e-3)
    assert _accuracy(head, net, x[test], y[test]) > 0.93  # chance is 0.1


def _recall_batches(seed: int, one_hot: bool):
    """Sequences of random tokens; the label is the *first* token, SEQ_LEN - 1 steps back."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        tokens = torch.randint(0, VOCAB, (64, SEQ_LEN), generator=gen)
        x = nn.functional.one_hot(tokens, VOCAB).float() if one_hot else tokens
        yield x, tokens[:, 0]


@pytest.mark.parametrize(
    "kind, one_hot, extra",
    [
        ("lstm", False, {"rnn_hidden_size": 32}),
        ("gru", True, {"rnn_hidden_size": 32}),
        ("transformer", False, {"d_model": 32, "n_heads": 2, "n_layers": 1, "pool": "last"}),
        ("transformer", True, {"d_model": 32, "n_heads": 2, "n_layers": 1, "pool": "cls", "positional": "learned"}),
        ("tcn", False, {"tcn_channels": [32, 32, 32], "kernel_size": 2}),  # receptive field 15 >= SEQ_LEN
    ],
)
def test_sequence_models_recall_the_first_token(kind, one_hot, extra):
    torch.manual_seed(0)
    space = gym.spaces.Box(0.0, 1.0, (VOCAB,)) if one_hot else gym.spaces.Discrete(VOCAB)
    net = build_backbone(BackboneConfig(kind=kind, hidden_sizes=[], **extra), space)
    head = nn.Linear(net.out_dim, VOCAB)

    def features(x):
        out = net(x)[0] if is_recurrent(net) else net(x)
        return out[:, -1] if out.dim() == 3 else out  # (B, out_dim) at the last step

    _train(net, head, features, _recall_batches(seed=1, one_hot=one_hot), steps=300, lr=1e-2)
    x, y = next(_recall_batches(seed=99, one_hot=one_hot))
    assert _accuracy(head, features, x, y) > 0.95


def test_mlp_on_the_last_step_cannot_recall_the_first_token():
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(kind="mlp", hidden_sizes=[32]), gym.spaces.Discrete(VOCAB))
    head = nn.Linear(net.out_dim, VOCAB)

    def features(x):
        return net(x[:, -1])

    _train(net, head, features, _recall_batches(seed=1, one_hot=False), steps=300, lr=1e-2)
    x, y = next(_recall_batches(seed=99, one_hot=False))
    assert _accuracy(head, features, x, y) < 0.45  # chance is 0.25


# --- hand-checkable outputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, shape", [("nature_cnn", (4, 84, 84)), ("small_cnn", (4, 10, 10)), ("impala_cnn", (3, 16, 16))]
)
def test_cnn_scales_uint8_pixels(kind, shape):
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(kind=kind), shape)
    pixels = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    out = net(pixels)
    assert out.shape == (2, net.out_dim) == (2, 512)
    torch.testing.assert_close(out, net(pixels.float() / 255.0))


def test_cnn_flatten_sizes():
    def flat(kind, shape, **kw):
        return build_backbone(BackboneConfig(kind=kind, features_dim=0, **kw), shape).out_dim

    assert flat("nature_cnn", (4, 84, 84)) == 64 * 7 * 7
    assert flat("small_cnn", (4, 10, 10), channels=[16, 32]) == 32 * 10 * 10  # MinAtar keeps every cell
    assert flat("small_cnn", (1, 28, 28), channels=[16, 32]) == 32 * 7 * 7  # 28 -> 14 -> 7
    assert flat("impala_cnn", (3, 64, 64)) == 32 * 8 * 8  # three max-pools of /2


def test_discrete_inputs_are_one_hot():
    net = build_backbone(BackboneConfig(kind="mlp", hidden_sizes=[]), gym.spaces.Discrete(5))
    assert net.out_dim == 5
    torch.testing.assert_close(net(torch.tensor([0, 3])), torch.eye(5)[[0, 3]])


# --- recurrent state and resets ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_resets_zero_the_state(kind):
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(kind=kind, hidden_sizes=[8], rnn_hidden_size=6, rnn_layers=2), (5,))
    x = torch.randn(3, 8, 5)
    # A non-zero starting state, so a reset at t=0 is visible too.
    state = net(torch.randn(3, 4, 5))[1]
    resets = torch.zeros(3, 8, dtype=torch.bool)
    resets[0, 3] = True
    resets[1, 0] = resets[1, 5] = True

    def row_state(b):
        return tuple(s[:, b : b + 1] for s in state) if kind == "lstm" else state[:, b : b + 1]

    with torch.no_grad():
        out, final = net(x, state, resets)
        no_reset = net(x, state)[0]
        expected = [
            torch.cat([net(x[0:1, :3], row_state(0))[0], net(x[0:1, 3:])[0]], dim=1),
            torch.cat([net(x[1:2, :5])[0], net(x[1:2, 5:])[0]], dim=1),
            net(x[2:3], row_state(2))[0],
        ]
        last = [net(x[0:1, 3:])[1], net(x[1:2, 5:])[1], net(x[2:3], row_state(2))[1]]
    torch.testing.assert_close(out, torch.cat(expected))
    torch.testing.assert_close(out[2], no_reset[2])
    assert not torch.allclose(out[0, 3:], no_reset[0, 3:], atol=1e-3)  # the reset mattered
    if kind == "lstm":
        for i in range(2):
            torch.testing.assert_close(final[i], torch.cat([s[i] for s in last], dim=1))
    else:
        torch.testing.assert_close(final, torch.cat(last, dim=1))
    # All-False resets take the fused path and change nothing.
    torch.testing.assert_close(net(x, state, torch.zeros(3, 8, dtype=torch.bool))[0], no_reset)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_state_carries_across_calls(kind):
    torch.manual_seed(0)
    net = build_backbone(BackboneConfig(kind=kind, hidden_sizes=[], rnn_hidden_size=6), (3,))
    x = torch.randn(2, 7, 3)
    with torch.no_grad():
        whole, _ = net(x, net.initial_state(2, "cpu"))
        first, state = net(x[:, :4])
        second, _ = net(x[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)


# --- transformer masks, pooling, dropout ------------------------------------------------------


def _transformer(**kw) -> nn.Module:
    torch.manual_seed(0)
    cfg = BackboneConfig(kind="transformer", hidden_sizes=[16], d_model=16, n_heads=2, n_layers=2, **kw)
    return build_backbone(cfg, (5,)).eval()


def test_causal_mask_hides_the_future():
    x = torch.randn(2, 7, 5)
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 3, 5)
    with torch.no_grad():
        causal = _transformer(causal=True)
        full = _transformer(causal=False)
        torch.testing.assert_close(causal(changed)[:, :4], causal(x)[:, :4])
        assert not torch.allclose(causal(changed)[:, 4:], causal(x)[:, 4:], atol=1e-3)
        assert not torch.allclose(full(changed)[:, :4], full(x)[:, :4], atol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pool", ["none", "last", "mean", "cls"])
def test_padding_mask_ignores_padded_steps(pool, causal):
    net = _transformer(pool=pool, causal=causal)
    x = torch.randn(2, 8, 5)
    x[0, 5:] = 100.0 * torch.randn(3, 5)  # junk in row 0's padding
    padding = torch.zeros(2, 8, dtype=torch.bool)
    padding[0, 5:] = True
    with torch.no_grad():
        out = net(x, padding_mask=padding)
        row0, row1 = net(x[0:1, :5])[0], net(x[1:2])[0]
        unmasked = net(x)
    if pool == "none":
        torch.testing.assert_close(out[0, :5], row0)
        assert torch.all(out[0, 5:] == 0)
    else:
        torch.testing.assert_close(out[0], row0)
    torch.testing.assert_close(out[1], row1)
    if not (causal and pool == "none"):  # causal steps before the padding never see it anyway
        assert not torch.allclose(unmasked[0], out[0], atol=1e-3)


def test_all_padding_row_stays_finite():
    net = _transformer(pool="mean", causal=True)
    out = net(torch.randn(2, 4, 5), padding_mask=torch.tensor([[True] * 4, [False, False, True, True]]))
    assert torch.isfinite(out).all()


def test_transformer_dropout_only_in_training():
    net = _transformer(pool="mean", dropout=0.3)
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x))
        net.train()
        assert not torch.allclose(net(x), net(x))


def test_sinusoidal_positions_stay_out_of_checkpoints():
    assert not any("positions" in k for k in _transformer().state_dict())
    assert "positions" in _transformer(positional="learned").state_dict()


# --- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, shape",
    [
        ({"kind": "mlp", "hidden_sizes": [8, 8], "layer_norm": True, "dropout": 0.1}, (3, 4)),
        ({"kind": "nature_cnn", "features_dim": 16}, (4, 84, 84)),
        ({"kind": "small_cnn", "channels": [4, 8], "features_dim": 16}, (2, 10, 10)),
        ({"kind": "impala_cnn", "channels": [4, 8], "features_dim": 16}, (3, 16, 16)),
        ({"kind": "lstm", "hidden_sizes": [8], "layer_norm": True, "rnn_hidden_size": 8, "rnn_layers": 2}, (5,)),
        ({"kind": "gru", "hidden_sizes": [], "rnn_hidden_size": 8, "rnn_layers": 2, "dropout": 0.1}, (2, 3)),
        ({"kind": "transformer", "d_model": 16, "positional": "learned", "pool": "cls"}, (5,)),
        ({"kind": "transformer", "hidden_sizes": [8], "d_model": 16, "pool": "mean", "activation": "gelu"}, (5,)),
    ],
    ids=lambda v: v["kind"] if isinstance(v, dict) else None,
)
def test_gradients_reach_every_parameter(overrides, shape):
    torch.manual_seed(0)
    net = build_backbone(from_dict(BackboneConfig, overrides), shape)
    x = torch.randn(2, 6, *shape) if is_sequence_model(net) else torch.randn(2, *shape)
    if is_recurrent(net):
        resets = torch.zeros(2, 6, dtype=torch.bool)
        resets[1, 2] = True
        out = net(x, resets=resets)[0]
    else:
        out = net(x)
    assert out.shape[-1] == net.out_dim
    (out * torch.randn_like(out)).sum().backward()  # a random projection: LayerNorm makes a plain sum flat
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, space, fragments",
    [
        ("nature_cnn", (210, 160, 3), ["nature_cnn", "(C, 84, 84)", "(210, 160, 3)", "small_cnn"]),
        ("nature_cnn", (4, 20, 20), ["H, W >= 36", "(4, 20, 20)"]),
        ("small_cnn", (10, 10, 4), ["channel-last", "(10, 10, 4)"]),
        ("impala_cnn", (64,), ["impala_cnn", "(C, H, W)", "(64,)"]),
        ("small_cnn", gym.spaces.Discrete(3), ["small_cnn", "Discrete(3)"]),
        ("mlp", gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), ["Box", "Discrete", "shape tuple", "Dict"]),
        ("lstm", "obs", ["Box", "Discrete", "'obs'"]),
        ("mlp", (3, 0), ["(3, 0)", ">= 1"]),
    ],
)
def test_bad_input_spaces_give_clear_errors(kind, space, fragments):
    with pytest.raises(ValueError) as info:
        build_backbone(BackboneConfig(kind=kind), space)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_bad_forward_inputs_give_clear_errors():
    mlp = build_backbone(BackboneConfig(kind="mlp"), gym.spaces.Box(-1, 1, (3, 4), np.float32))
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 3, 4\); got \(2, 12\)"):
        mlp(torch.randn(2, 12))
    gru = build_backbone(BackboneConfig(kind="gru"), (3,))
    with pytest.raises(ValueError, match=r"\(B, T, 3\)"):
        gru(torch.randn(2, 3))
    with pytest.raises(ValueError, match="resets must have shape"):
        gru(torch.randn(2, 4, 3), resets=torch.zeros(4, 2, dtype=torch.bool))
    net = build_backbone(BackboneConfig(kind="transformer", max_len=4), (3,))
    with pytest.raises(ValueError, match="max_len is 4"):
        net(torch.randn(1, 5, 3))
    with pytest.raises(ValueError, match="padding_mask must have shape"):
        net(torch.randn(1, 4, 3), padding_mask=torch.zeros(4, dtype=torch.bool))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="d_model=30 must be divisible by backbone.n_heads=4"):
        build_backbone(BackboneConfig(kind="transformer", d_model=30), (3,))
    with pytest.raises(ValueError, match="kind='cnn' is not allowed"):
        build_backbone(BackboneConfig(kind="cnn"), (3,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout"):
        from_dict(BackboneConfig, {"dropout": 1.5})
    cfg = apply_overrides(BackboneConfig(), ["kind=gru", "hidden_sizes=[64]", "rnn_hidden_size=32"])
    assert (cfg.kind, cfg.hidden_sizes, cfg.rnn_hidden_size) == ("gru", [64], 32)
    with pytest.raises(ValueError, match="kind"):
        apply_overrides(BackboneConfig(), ["kind=resnet"])


def test_is_recurrent_and_is_sequence_model():
    kinds = {"mlp": (2,), "small_cnn": (1, 8, 8), "lstm": (2,), "gru": (2,), "transformer": (2,), "tcn": (2,)}
    nets = {k: build_backbone(BackboneConfig(kind=k), s) for k, s in kinds.items()}
    assert [k for k, n in nets.items() if is_recurrent(n)] == ["lstm", "gru"]
    assert [k for k, n in nets.items() if is_sequence_model(n)] == ["lstm", "gru", "transformer", "tcn"]


# --- tcn: causality, receptive field, padding ------------------------------------------------


def _tcn(**kw) -> nn.Module:
    torch.manual_seed(0)
    # tanh: no dead units, so every step inside the receptive field has a non-zero gradient
    return build_backbone(BackboneConfig(kind="tcn", hidden_sizes=[8], activation="tanh", **kw), (3,))


@pytest.mark.parametrize("channels, kernel", [([8, 8, 8], 3), ([8, 8], 2), ([8], 4)])
def test_tcn_output_depends_exactly_on_its_receptive_field_and_never_on_later_steps(channels, kernel):
    net = _tcn(tcn_channels=channels, kernel_size=kernel)
    field = 1 + 2 * (kernel - 1) * (2 ** len(channels) - 1)
    assert net.receptive_field == field and net.out_dim == channels[-1]
    steps, t = field + 6, field + 2
    x = torch.randn(2, steps, 3, requires_grad=True)
    net(x)[:, t].sum().backward()
    seen = x.grad.abs().sum(dim=(0, 2)) > 0  # (T,): which input steps reach output step t
    expected = (torch.arange(steps) <= t) & (torch.arange(steps) > t - field)
    assert torch.equal(seen, expected)


def test_tcn_padding_before_the_start_gives_the_real_steps_what_the_short_sequence_gets():
    net = _tcn(tcn_channels=[8, 8], kernel_size=3)
    real = torch.randn(1, 4, 3)
    padded = torch.cat([torch.randn(1, 5, 3) * 100, real], dim=1)  # junk where the mask says padding
    mask = (torch.arange(9) < 5)[None]
    out = net(padded, mask)
    torch.testing.assert_close(out[:, 5:], net(real), rtol=1e-5, atol=1e-6)
    assert torch.equal(out[:, :5], torch.zeros_like(out[:, :5]))


@pytest.mark.parametrize("fields, match", [({"tcn_channels": []}, "tcn_channels"), ({"kernel_size": 1}, "kernel_size"),
                                           ({"tcn_channels": [8, 0]}, "tcn_channels")])
def test_bad_tcn_sizes_are_one_clear_error(fields, match):
    with pytest.raises(ValueError, match=match):
        BackboneConfig(kind="tcn", **fields)
