"""LSTM / GRU backbone with explicit state and episode-reset masks.

The state is passed in and returned (never hidden inside the module), so an
actor stepping one env step at a time and a learner replaying stored
sequences use the same forward.
"""

from __future__ import annotations

import torch
from torch import nn

from rlgen.backbones.config import BackboneConfig
from rlgen.backbones.mlp import mlp_layers
from rlgen.backbones.spaces import InputSpec, flat_features
from rlgen.errors import InputError

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _mask_state(state: State, keep: torch.Tensor) -> State:
    """Zero the batch rows of ``state`` where ``keep`` is 0; keep: (1, B, 1)."""
    if isinstance(state, tuple):
        return tuple(s * keep.to(s.dtype) for s in state)  # type: ignore[return-value]
    return state * keep.to(state.dtype)


class RecurrentBackbone(nn.Module):
    """Per-step MLP pre-encoder (when hidden_sizes is non-empty) -> LSTM or GRU.

    ``out_dim`` is ``rnn_hidden_size``. State: a (layers, B, H) tensor for GRU,
    an (h, c) tuple of such tensors for LSTM.
    """

    def __init__(self, config: BackboneConfig, spec: InputSpec):
        super().__init__()
        self.kind = config.kind
        self.spec = spec
        self.num_layers = config.rnn_layers
        self.hidden_size = config.rnn_hidden_size
        self.encoder, in_dim = mlp_layers(spec.flat_dim, config)
        rnn_cls = nn.LSTM if config.kind == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            in_dim,
            config.rnn_hidden_size,
            num_layers=config.rnn_layers,
            batch_first=True,
            dropout=config.dropout if config.rnn_layers > 1 else 0.0,  # torch warns on 1 layer
        )
        if config.kind == "lstm":
            self._init_forget_bias()
        self.out_dim = config.rnn_hidden_size

    def _init_forget_bias(self) -> None:
        """Forget-gate bias 1 (Jozefowicz et al., 2015): memory survives early training.

        Without it, recalling a token 10 steps back stalls at chance for some
        seeds; PyTorch orders the gates (input, forget, cell, output).
        """
        h = self.hidden_size
        with torch.no_grad():
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    param[h : 2 * h].fill_(1.0)
                elif name.startswith("bias_hh"):
                    param[h : 2 * h].fill_(0.0)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zeros: (layers, B, H) for GRU, a tuple (h, c) of those for LSTM."""
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=device)
        return (zeros, zeros.clone()) if self.kind == "lstm" else zeros

    def forward(
        self,
        x: torch.Tensor,
        state: State | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """Run a batch of sequences.

        Args:
            x: (B, T, *obs_shape) observations ((B, T) indices for a Discrete space).
            state: the state before step 0, or None for zeros.
            resets: (B, T) bool; ``resets[b, t]`` True means an episode starts at
                step t, so row b's state is zeroed before step t is processed.

        Returns:
            features (B, T, out_dim) and the state after the last step.
        """
        feats = flat_features(x, self.spec, lead=2, who=self.kind)  # (B, T, flat_dim)
        batch, steps = feats.shape[:2]
        h = self.encoder(feats)  # (B, T, in_dim)
        if state is None:
            state = self.initial_state(batch, h.device)
        if resets is None:
            return self.rnn(h, state)  # one cuDNN call over all T steps
        if tuple(resets.shape) != (batch, steps):
            raise InputError(f"resets must have shape (B, T) = {(batch, steps)}; got {tuple(resets.shape)}")
        resets = resets.bool()
        # Only the time steps where some row resets break the sequence; between
        # them the fused kernel runs over whole chunks. One host sync here.
        cuts = set(resets.any(dim=0).nonzero().flatten().tolist())
        if not cuts:
            return self.rnn(h, state)
        outputs = []
        bounds = sorted({0, *cuts, steps})
        for start, end in zip(bounds[:-1], bounds[1:]):
            if start in cuts:
                state = _mask_state(state, (~resets[:, start]).view(1, batch, 1))
            out, state = self.rnn(h[:, start:end], state)  # (B, end - start, H)
            outputs.append(out)
        return torch.cat(outputs, dim=1), state  # (B, T, H)
