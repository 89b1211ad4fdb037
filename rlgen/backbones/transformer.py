"""Pre-LayerNorm transformer encoder over sequences of observations.

Attention goes through ``F.scaled_dot_product_attention`` so the fused
(flash / memory-efficient) kernels are used where the device has them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.backbones.config import BackboneConfig
from rlgen.backbones.mlp import make_activation, mlp_layers
from rlgen.backbones.spaces import InputSpec, flat_features
from rlgen.errors import InputError


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """The fixed encoding of Vaswani et al. (2017): (max_len, d_model), sin on even dims, cos on odd."""
    position = torch.arange(max_len, dtype=torch.float32)[:, None]  # (L, 1)
    half = (d_model + 1) // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * (-2.0 * math.log(10000.0) / d_model))  # (half,)
    angles = position * freq  # (L, half)
    table = torch.zeros(max_len, 2 * half)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table[:, :d_model]  # odd d_model drops the last cos column


def attention_mask(padding_mask: torch.Tensor | None, n: int, causal: bool) -> torch.Tensor | None:
    """Boolean (B, 1, n, n) mask, True = may attend; None when ``is_causal`` alone suffices.

    Every query may always attend to itself, so a padded query whose keys are
    all masked (left padding + causal, or an all-padding row) gets a finite
    output instead of NaN, which would otherwise leak into the next layer.
    """
    if padding_mask is None:
        return None
    device = padding_mask.device
    allowed = (~padding_mask)[:, None, None, :]  # (B, 1, 1, n): key is real
    if causal:
        allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=device).tril()  # (B, 1, n, n)
    return allowed | torch.eye(n, dtype=torch.bool, device=device)  # (B, 1, n, n)


class Block(nn.Module):
    """x + attn(LN(x)), then x + feed_forward(LN(x)); shape (B, T, D) kept."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        d = config.d_model
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(
            nn.Linear(d, config.ff_mult * d),
            make_activation(config.activation),
            nn.Dropout(config.dropout),
            nn.Linear(config.ff_mult * d, d),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool,
                weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``weights``, when given, receives this block's attention weights (B, nh, T, T) (rlgen explain)."""
        batch, steps, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)  # 3 x (B, T, D)
        q, k, v = (t.view(batch, steps, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        if weights is None:
            y = F.scaled_dot_product_attention(  # (B, nh, T, D / nh)
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
            )
        else:  # the same attention written out, to keep its weights (no dropout: for inspection)
            allowed = mask if mask is not None else torch.ones(steps, steps, dtype=torch.bool, device=x.device)
            if is_causal:
                allowed = allowed & torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril()
            scores = (q @ k.transpose(-2, -1)) / (d // self.n_heads) ** 0.5  # (B, nh, T, T)
            attention = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
            weights.append(attention)
            y = attention @ v  # (B, nh, T, D / nh)
        y = y.transpose(1, 2).reshape(batch, steps, d)  # (B, T, D)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ff(self.ln2(x)))


class TransformerBackbone(nn.Module):
    """Per-step embedding + positions -> pre-LN blocks -> final LayerNorm -> pooling.

    The embedding is the MLP pre-encoder (when hidden_sizes is non-empty)
    followed by a linear layer to d_model. ``out_dim`` is ``d_model``; pool
    "none" returns (B, T, out_dim), "last" / "mean" / "cls" return (B, out_dim).
    The cls token is appended *after* the last step (and gets no position), so
    it sees the whole sequence even under the causal mask.
    """

    def __init__(self, config: BackboneConfig, spec: InputSpec):
        super().__init__()
        self.spec = spec
        self.causal = config.causal
        self.pool = config.pool
        self.max_len = config.max_len
        encoder, enc_dim = mlp_layers(spec.flat_dim, config)
        self.embed = nn.Sequential(encoder, nn.Linear(enc_dim, config.d_model))
        if config.positional == "learned":
            self.positions = nn.Parameter(torch.randn(config.max_len, config.d_model) * 0.02)
        else:
            # Not persistent: it is a pure function of the config, so it stays out of checkpoints.
            self.register_buffer("positions", sinusoidal_positions(config.max_len, config.d_model), persistent=False)
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.d_model) * 0.02) if config.pool == "cls" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.out_dim = config.d_model

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None,
                attention: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Encode a batch of sequences.

        Args:
            x: (B, T, *obs_shape) observations ((B, T) indices for a Discrete space).
            padding_mask: (B, T) bool, True marks padding steps, which no step
                attends to and which pooling ignores; None = no padding.
            attention: a list that receives each block's attention weights (B, nh, T, T).

        Returns:
            (B, T, out_dim) for pool "none" (padding steps zeroed), else (B, out_dim).
        """
        feats = flat_features(x, self.spec, lead=2, who="transformer")  # (B, T, flat_dim)
        batch, steps = feats.shape[:2]
        if steps > self.max_len:
            raise InputError(f"transformer got a sequence of {steps} steps; max_len is {self.max_len}")
        if padding_mask is not None:
            if tuple(padding_mask.shape) != (batch, steps):
                raise InputError(
                    f"padding_mask must have shape (B, T) = {(batch, steps)}; got {tuple(padding_mask.shape)}"
                )
            padding_mask = padding_mask.bool()
        h = self.embed(feats) + self.positions[:steps]  # (B, T, D)
        if self.cls_token is not None:
            h = torch.cat([h, self.cls_token.expand(batch, 1, -1)], dim=1)  # (B, T + 1, D)
            if padding_mask is not None:
                padding_mask = F.pad(padding_mask, (0, 1), value=False)  # (B, T + 1)
        h = self.drop(h)
        mask = attention_mask(padding_mask, h.shape[1], self.causal)
        is_causal = self.causal and mask is None
        for block in self.blocks:
            h = block(h, mask, is_causal, attention)
        h = self.ln_f(h)  # (B, T or T + 1, D)
        return self._pool(h, padding_mask, steps)

    def _pool(self, h: torch.Tensor, padding_mask: torch.Tensor | None, steps: int) -> torch.Tensor:
        """(B, T(+1), D) -> (B, T, D) for "none", else (B, D)."""
        if self.pool == "cls":
            return h[:, -1]  # (B, D)
        if padding_mask is None:
            if self.pool == "last":
                return h[:, -1]
            return h.mean(dim=1) if self.pool == "mean" else h
        valid = (~padding_mask).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        if self.pool == "none":
            return h * valid
        if self.pool == "mean":
            return (h * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)  # (B, D)
        # "last": the last real step, wherever the padding sits (left or right).
        index = (torch.arange(steps, device=h.device) * valid.squeeze(-1)).argmax(dim=1)  # (B,)
        return h[torch.arange(h.shape[0], device=h.device), index]  # (B, D)
