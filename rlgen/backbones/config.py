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

Kind = Literal["mlp", "nature_cnn", "small_cnn", "impala_cnn", "lstm", "gru", "transformer"]
Activation = Literal["relu", "tanh", "gelu", "silu", "elu", "leaky_relu"]
Positional = Literal["sinusoidal", "learned"]
Pool = Literal["none", "last", "mean", "cls"]

KINDS: tuple[str, ...] = get_args(Kind)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
POSITIONALS: tuple[str, ...] = get_args(Positional)
POOLS: tuple[str, ...] = get_args(Pool)
CNN_KINDS = ("nature_cnn", "small_cnn", "impala_cnn")
RNN_KINDS = ("lstm", "gru")

# Used when ``channels`` is empty: small_cnn follows the MinAtar-scale nets,
# impala_cnn the IMPALA paper (Espeholt et al., 2018).
DEFAULT_CHANNELS = {"small_cnn": [32, 64], "impala_cnn": [16, 32, 32]}


@dataclass
class BackboneConfig:
    """Which feature extractor to build and its sizes; see ``build_backbone``."""

    kind: Kind = field(
        default="mlp",
        metadata={"help": "mlp | nature_cnn | small_cnn | impala_cnn | lstm | gru | transformer"},
    )
    hidden_sizes: list[int] = field(
        default_factory=lambda: [256, 256],
        metadata={"help": "MLP widths; for lstm/gru/transformer a per-step MLP pre-encoder when non-empty"},
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
    max_len: int = field(default=512, metadata={"help": "Longest sequence the transformer accepts"})
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
        for name in ("hidden_sizes", "channels"):
            sizes = getattr(self, name)
            if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
                raise InputError(f"backbone.{name}={sizes!r} must be a list of positive ints")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"backbone.dropout={self.dropout!r} must be in [0, 1)")
        if self.features_dim < 0:
            raise InputError(f"backbone.features_dim={self.features_dim!r} must be >= 0 (0 = no linear layer)")
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
