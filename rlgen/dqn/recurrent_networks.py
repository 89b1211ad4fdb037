"""Q-networks with memory: an LSTM/GRU, or a window of the last K steps (causal transformer or TCN), then the DQN head.

Both kinds answer the same two questions, so the learner and the actor need
not know which one they hold:

- ``chunk_q(obs, resets, state, first)``: Q-values of every step ``>= first`` of a
  replayed chunk (B, L, *obs) -> (B, L - first, A). Steps before ``first`` are
  context: the RNN's burn-in (run without gradient) or the window's
  earlier steps.
- ``act(obs, memory, starts)``: one vector step (N, *obs) -> (N, A), carrying
  ``memory`` (the RNN state, or the last K observations) and clearing it for
  the copies whose episode starts at this step.

The head is ``rlgen.dqn.networks.QNetwork`` (plain or dueling) applied to the
backbone's per-step features.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rlgen.backbones import (
    RecurrentBackbone,
    State,
    TCNBackbone,
    TransformerBackbone,
    build_backbone,
)
from rlgen.backbones.config import SEQUENCE_KINDS, WINDOW_KINDS
from rlgen.dqn.config import DQNConfig
from rlgen.dqn.networks import QNetwork
from rlgen.errors import InputError


def is_sequence_config(config: DQNConfig) -> bool:
    """True when ``config`` asks for a Q-network with memory (lstm, gru, transformer or tcn backbone)."""
    return config.backbone.kind in SEQUENCE_KINDS


class _Features(nn.Module):
    """Already-computed features passed through, with the ``out_dim`` that ``QNetwork`` reads."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _q_head(out_dim: int, num_actions: int, dueling: bool) -> QNetwork:
    return QNetwork(_Features(out_dim), num_actions, dueling=dueling)


def _per_step(head: QNetwork, features: torch.Tensor) -> torch.Tensor:
    """Apply the head to (B, T, F) features -> (B, T, A); the dueling mean must run over actions."""
    batch, steps = features.shape[:2]
    return head(features.reshape(batch * steps, -1)).view(batch, steps, -1)


class RecurrentQNetwork(nn.Module):
    """LSTM/GRU backbone -> Q head, for every step of a sequence.

    Memory is the backbone's state: (layers, N, H) for GRU, an (h, c) tuple for LSTM.
    """

    def __init__(self, backbone: RecurrentBackbone, num_actions: int, dueling: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = _q_head(backbone.out_dim, num_actions, dueling)
        self.num_actions = num_actions
        parts = 2 if backbone.kind == "lstm" else 1
        self.state_dim = parts * backbone.num_layers * backbone.hidden_size

    def forward(
        self, obs: torch.Tensor, state: State | None = None, resets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """(B, T, *obs) -> Q-values (B, T, A) and the state after the last step."""
        features, state = self.backbone(obs, state, resets)  # (B, T, H)
        return _per_step(self.head, features), state

    def chunk_q(
        self, obs: torch.Tensor, resets: torch.Tensor, state: State | None, first: int
    ) -> torch.Tensor:
        """Q-values of chunk steps ``first ...`` (B, L - first, A); the burn-in carries no gradient."""
        if state is None:
            state = self.backbone.initial_state(obs.shape[0], obs.device)
        if first > 0:
            with torch.no_grad():
                _, state = self.backbone(obs[:, :first], state, resets[:, :first])
        features = self._features_by_episode(obs[:, first:], resets[:, first:], state)  # (B, M, H)
        if features is None:
            features, _ = self.backbone(obs[:, first:], state, resets[:, first:])  # (B, M, H)
        return _per_step(self.head, features)

    def _features_by_episode(self, obs: torch.Tensor, resets: torch.Tensor, state: State) -> torch.Tensor | None:
        """Backbone features of (B, M, *obs) with resets, as one batched RNN call; None when not worth it.

        The backbone's own reset handling restarts its fused kernel at every step
        where *any* row resets, which in a batch of chunks is nearly every step.
        Here each row is cut into its episode pieces instead; the pieces become
        rows of one right-padded batch (S, M', *obs), the first piece of a row
        starting from that row's state and every other piece from zeros, exactly
        what a reset does. Padding steps come after a piece's end, so they never
        touch its features. When the padded batch would more than double the
        work (many short pieces), the caller falls back to the backbone's way,
        which then costs about as much on CPU (measured with 64-unit LSTM/GRU:
        the pieces win up to ~2x with few resets per chunk, lose with many).
        """
        batch, steps = resets.shape
        device = resets.device
        cut = resets.clone()
        cut[:, 0] = True  # every row begins a piece at step 0
        piece_in_row = cut.long().cumsum(dim=1) - 1  # (B, M)
        pieces_per_row = piece_in_row[:, -1] + 1  # (B,)
        row_offset = pieces_per_row.cumsum(dim=0) - pieces_per_row  # (B,)
        piece = row_offset[:, None] + piece_in_row  # (B, M): global piece index
        columns = torch.arange(steps, device=device).expand(batch, steps)
        piece_start = torch.where(cut, columns, torch.zeros_like(columns)).cummax(dim=1).values
        offset = columns - piece_start  # (B, M): step within its piece
        num_pieces, length = int(pieces_per_row.sum()), int(offset.max()) + 1
        if num_pieces == batch or num_pieces * length > 2 * batch * steps:
            return None  # no reset at all (one fused call anyway), or too much padding
        pieces = obs.new_zeros(num_pieces, length, *obs.shape[2:])
        pieces[piece, offset] = obs  # (S, M', *obs)
        # Row b's first piece keeps its state unless it starts with a reset; other pieces start at zero.
        keep = (~resets[:, 0])[None, :, None]  # (1, B, 1)
        parts = state if isinstance(state, tuple) else (state,)
        piece_parts = []
        for part in parts:  # (layers, B, H)
            full = part.new_zeros(part.shape[0], num_pieces, part.shape[2])
            full[:, row_offset] = part * keep.to(part.dtype)
            piece_parts.append(full)
        piece_state = tuple(piece_parts) if isinstance(state, tuple) else piece_parts[0]
        features, _ = self.backbone(pieces, piece_state)  # (S, M', H)
        return features[piece, offset]  # (B, M, H)

    def initial_memory(self, num_envs: int, device: torch.device | str | None = None) -> State:
        return self.backbone.initial_state(num_envs, device)

    def act(self, obs: torch.Tensor, memory: State, starts: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One step for N env copies: obs (N, *obs), starts (N,) bool -> (Q (N, A), new memory)."""
        q, memory = self(obs.unsqueeze(1), memory, starts.view(-1, 1))  # (N, 1, A)
        return q[:, 0], memory

    def pack_state(self, state: State) -> torch.Tensor:
        """The state as one row of floats per env copy, (N, state_dim), for the replay buffer."""
        parts = state if isinstance(state, tuple) else (state,)
        return torch.cat([p.permute(1, 0, 2).reshape(p.shape[1], -1) for p in parts], dim=1)

    def unpack_state(self, rows: torch.Tensor) -> State:
        """Inverse of ``pack_state``: (B, state_dim) -> the backbone's state."""
        layers, hidden = self.backbone.num_layers, self.backbone.hidden_size
        parts = rows.view(rows.shape[0], -1, layers, hidden).permute(1, 2, 0, 3).contiguous()  # (P, layers, B, H)
        return (parts[0], parts[1]) if self.backbone.kind == "lstm" else parts[0]


class WindowQNetwork(nn.Module):
    """A causal transformer or TCN over the last ``context_length`` observations -> Q of the newest one.

    A window never reaches back past its episode's start: earlier steps are
    padding (masked keys for the transformer, zeroed steps for the TCN), so the Q-value of a step depends only on its own
    episode's last K observations, in replay exactly as in acting. Memory is
    ``(window (N, K, *obs), padding (N, K) bool)``.
    """

    def __init__(self, backbone: TransformerBackbone | TCNBackbone, num_actions: int, context_length: int,
                 dueling: bool = False):
        super().__init__()
        if not 1 <= context_length <= backbone.max_len:
            raise InputError(
                f"context_length={context_length} must be between 1 and backbone.max_len={backbone.max_len}"
            )
        self.backbone = backbone
        self.head = _q_head(backbone.out_dim, num_actions, dueling)
        self.num_actions = num_actions
        self.context_length = context_length
        self.state_dim = 0

    def forward(self, windows: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """windows (B, K, *obs), padding_mask (B, K) True = padding -> Q-values of the last step (B, A)."""
        features = self.backbone(windows, padding_mask)  # (B, K, D), or (B, D) when the config pools
        if features.dim() == 3:
            features = features[:, -1]  # (B, D)
        return self.head(features)

    def chunk_q(self, obs: torch.Tensor, resets: torch.Tensor, state: None, first: int) -> torch.Tensor:
        """Q-values of chunk steps ``first ...`` (B, L - first, A), each from its own K-step window."""
        batch, steps = resets.shape
        k = self.context_length
        before = obs.new_zeros(batch, k - 1, *obs.shape[2:])
        padded = torch.cat([before, obs], dim=1)  # (B, K - 1 + L, *obs)
        episode = resets.long().cumsum(dim=1)  # (B, L): steps of one episode share a number
        episode = torch.cat([episode.new_full((batch, k - 1), -1), episode], dim=1)  # (B, K - 1 + L)
        windows = padded.unfold(1, k, 1).movedim(-1, 2)[:, first:]  # (B, L - first, K, *obs)
        window_episode = episode.unfold(1, k, 1)[:, first:]  # (B, L - first, K)
        padding = window_episode != window_episode[..., -1:]  # another episode, or before the chunk
        q = self(windows.flatten(0, 1), padding.flatten(0, 1))  # (B * (L - first), A)
        return q.view(batch, steps - first, -1)

    def initial_memory(self, num_envs: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        spec = self.backbone.spec
        dtype = torch.long if spec.n_categories is not None else torch.float32
        window = torch.zeros(num_envs, self.context_length, *spec.shape, dtype=dtype, device=device)
        return window, torch.ones(num_envs, self.context_length, dtype=torch.bool, device=device)

    def act(
        self, obs: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor], starts: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One step for N env copies: slide each window by one; a starting episode pads all but the newest."""
        window, padding = memory
        window = torch.cat([window[:, 1:], obs.unsqueeze(1).to(window.dtype)], dim=1)  # (N, K, *obs)
        padding = torch.cat([padding[:, 1:], torch.zeros_like(padding[:, :1])], dim=1)  # (N, K); no len(): exportable
        padding[:, :-1] |= starts.view(-1, 1)
        return self(window, padding), (window, padding)


def build_sequence_q_network(
    config: DQNConfig, obs_space: gym.spaces.Box, num_actions: int
) -> RecurrentQNetwork | WindowQNetwork:
    """The Q-network with memory that ``config.backbone.kind`` names (lstm, gru, transformer or tcn)."""
    if not is_sequence_config(config):
        raise InputError(
            f"backbone.kind={config.backbone.kind!r} has no memory; recurrent DQN takes {', '.join(SEQUENCE_KINDS)}"
        )
    backbone = build_backbone(config.backbone, obs_space)
    if config.backbone.kind in WINDOW_KINDS:
        return WindowQNetwork(backbone, num_actions, config.context_length, dueling=config.dueling)
    return RecurrentQNetwork(backbone, num_actions, dueling=config.dueling)
