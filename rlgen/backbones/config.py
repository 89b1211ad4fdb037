"""``BackboneConfig``: one dataclass that describes every backbone kind.

Each kind reads only the fields that concern it (listed in the help), so one
YAML block ``backbone: {kind: lstm, rnn_hidden_size: 256}`` switches networks
without touching the algorithm that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from rlgen.config import check_types
from rlgen.errors import InputError

Kind = Literal["mlp", "nature_cnn", "small_cnn", "impala_cnn", "lstm", "gru", "transformer", "tcn"]
Activation = Literal["relu", "tanh", "gelu", "silu", "elu", "leaky_relu"]
Positional = Literal["sinusoidal", "learned"]
Pool = Literal["none", "last", "mean", "cls"]

KINDS: tuple[str, ...] = get_args(Kind)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
POSITIONALS: tuple[str, ...] = get_args(Positional)
POOLS: tuple[str, ...] = get_args(Pool)
CNN_KINDS = ("nature_cnn", "small_cnn", "impala_cnn")
RNN_KINDS = ("lstm", "gru")
# Sequence backbones that read a window of the last K steps (no carried state).
WINDOW_KINDS = ("transformer", "tcn")
SEQUENCE_KINDS = (*RNN_KINDS, *WINDOW_KINDS)

# Used when ``channels`` is empty: small_cnn follows the MinAtar-scale nets,
# impala_cnn the IMPALA paper (Espeholt et al., 2018).
DEFAULT_CHANNELS = {"small_cnn": [32, 64], "impala_cnn": [16, 32, 32]}


@dataclass
class BackboneConfig:
    """Which feature extractor to build and its sizes; see ``build_backbone``."""

    kind: Kind = field(
        default="mlp",
        metadata={"help": "mlp | nature_cnn | small_cnn | impala_cnn | lstm | gru | transformer | tcn"},
    )
    hidden_sizes: list[int] = field(
        default_factory=lambda: [256, 256],
        metadata={"help": "MLP widths; for lstm/gru/transformer/tcn a per-step MLP pre-encoder when non-empty"},
    )
    activation: Activation = field(
        default="relu", metadata={"help": "relu | tanh | gelu | silu | elu | leaky_relu (all kinds)"}
    )
    layer_norm: bool = field(
        default=False,
        metadata={"help": "LayerNorm before each MLP activation (mlp, pre-encoders) and the CNN head's (PQN)"},
    )
    dropout: float = field(
        default=0.0, metadata={"help": "Dropout probability in MLPs, between RNN layers and in transformers"}
    )
    channels: list[int] = field(
        default_factory=list,
        metadata={"help": "Conv channels per stage for small_cnn/impala_cnn; empty = [32, 64] / [16, 32, 32]"},
    )
    features_dim: int = field(
        default=512, metadata={"help": "Width of the CNNs' final linear layer; 0 = no linear layer (flat conv map)"}
    )
    rnn_hidden_size: int = field(default=128, metadata={"help": "LSTM/GRU hidden size (= out_dim)"})
    rnn_layers: int = field(default=1, metadata={"help": "Stacked LSTM/GRU layers"})
    d_model: int = field(default=64, metadata={"help": "Transformer width (= out_dim)"})
    n_heads: int = field(default=4, metadata={"help": "Attention heads; must divide d_model"})
    n_layers: int = field(default=2, metadata={"help": "Transformer blocks"})
    ff_mult: int = field(default=4, metadata={"help": "Transformer feed-forward width = ff_mult * d_model"})
    max_len: int = field(default=512, metadata={"help": "Longest sequence the transformer (or tcn) accepts"})
    tcn_channels: list[int] = field(
        default_factory=lambda: [64, 64, 64],
        metadata={"help": "TCN: widths of the residual blocks; block i has dilation 2^i"},
    )
    kernel_size: int = field(
        default=3, metadata={"help": "TCN: convolution kernel; receptive field 1 + 2 (k - 1) (2^blocks - 1)"}
    )
    positional: Positional = field(
        default="sinusoidal", metadata={"help": "Transformer positional encoding: sinusoidal | learned"}
    )
    causal: bool = field(default=True, metadata={"help": "Transformer: step t attends only to steps <= t"})
    pool: Pool = field(
        default="none",
        metadata={"help": "Transformer output: none (B, T, D) | last | mean | cls (B, D)"},
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field, its value and what is allowed (runs on construction)."""
        check_types(self)
        for name, allowed in (
            ("kind", KINDS),
            ("activation", ACTIVATIONS),
            ("positional", POSITIONALS),
            ("pool", POOLS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(f"backbone.{name}={value!r} is not allowed; choose one of {', '.join(allowed)}")
        for name in ("hidden_sizes", "channels", "tcn_channels"):
            sizes = getattr(self, name)
            if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
                raise InputError(f"backbone.{name}={sizes!r} must be a list of positive ints")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"backbone.dropout={self.dropout!r} must be in [0, 1)")
        if self.features_dim < 0:
            raise InputError(f"backbone.features_dim={self.features_dim!r} must be >= 0 (0 = no linear layer)")
        if not self.tcn_channels:
            raise InputError("backbone.tcn_channels=[] must name at least one block, e.g. [64, 64, 64]")
        if self.kernel_size < 2:
            raise InputError(f"backbone.kernel_size={self.kernel_size!r} must be >= 2 (1 would mix no steps)")
        for name in ("rnn_hidden_size", "rnn_layers", "d_model", "n_heads", "n_layers", "ff_mult", "max_len"):
            value = getattr(self, name)
            if value < 1:
                raise InputError(f"backbone.{name}={value!r} must be >= 1")
        if self.d_model % self.n_heads:
            raise InputError(
                f"backbone.d_model={self.d_model} must be divisible by backbone.n_heads={self.n_heads}"
            )

    def conv_channels(self) -> list[int]:
        """``channels``, or the kind's default when it is empty."""
        return list(self.channels) or list(DEFAULT_CHANNELS.get(self.kind, []))
