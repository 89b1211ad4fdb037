"""Cost of one DQN update of the CartPole-v1 preset on this machine, piece by piece.

Times, best of ``--repeats`` rounds of ``--iters`` calls each, one torch thread:
  - a forward pass of batch 128 through the preset's Q-network,
  - one whole update (TD loss + ``gradient_step``) as rlgen computes it, the
    double-DQN next action from a separate no-grad pass,
  - the same update with the next action taken from one pass over [obs; next_obs]
    (rlgen's earlier formulation, written out here as the reference),
  - one replay sample of batch 128 from a 50k-slot buffer of 16 copies (3-step returns).

    python scripts/bench_dqn_update.py
"""

from __future__ import annotations

import argparse
import copy
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlgen.dqn import make_config
from rlgen.dqn.networks import build_q_network
from rlgen.dqn.replay import ReplayBatch, ReplayBuffer
from rlgen.dqn.losses import TransitionTDLoss
from rlgen.training import gradient_step, make_optimizer


def one_pass_td_loss(q_net, target_net, batch: ReplayBatch) -> torch.Tensor:
    """Double-DQN Huber loss with online Q of obs and next_obs from one forward over both."""
    b = batch.actions.shape[0]
    with torch.no_grad():
        next_target = target_net(batch.next_obs)
    q_both = q_net(torch.cat([batch.obs, batch.next_obs]))  # (2B, A): backward runs over all 2B rows
    q_all, next_online = q_both[:b], q_both[b:].detach()
    next_values = next_target.gather(1, next_online.argmax(dim=1, keepdim=True)).squeeze(1)
    targets = batch.returns + batch.discounts * next_values
    return F.smooth_l1_loss(q_all.gather(1, batch.actions.unsqueeze(1)).squeeze(1), targets)


def best_time(fn, iters: int, repeats: int) -> float:
    """Best mean seconds per call over ``repeats`` rounds of ``iters`` calls (after a warm-up)."""
    for _ in range(min(iters, 100)):
        fn()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        rounds.append((time.perf_counter() - start) / iters)
    return min(rounds)


def filled_buffer(config, rng: np.random.Generator) -> ReplayBuffer:
    buffer = ReplayBuffer(capacity=config.buffer_size, num_envs=config.num_envs, obs_shape=(4,),
                          obs_dtype=np.float32, frame_stack=1, n_step=config.n_step, gamma=config.gamma,
                          device=torch.device("cpu"))  # fmt: skip
    n = config.num_envs
    buffer.start(rng.standard_normal((n, 4)).astype(np.float32))
    autoreset = np.zeros(n, dtype=bool)
    for _ in range(3000):  # 48k transitions, episodes of ~40 steps
        terminated, truncated = rng.random(n) < 0.02, rng.random(n) < 0.005
        buffer.add(rng.integers(0, 2, n), np.ones(n, np.float32), terminated, truncated,
                   rng.standard_normal((n, 4)).astype(np.float32), autoreset)  # fmt: skip
        autoreset = terminated | truncated
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = make_config("CartPole-v1")
    space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    q_net = build_q_network(config, space, 2)
    target_net = copy.deepcopy(q_net).requires_grad_(False)
    optimizer = make_optimizer("adam", q_net.parameters(), config.learning_rate)
    params = list(q_net.parameters())
    rng = np.random.default_rng(0)
    buffer = filled_buffer(config, rng)
    batch = buffer.sample(config.batch_size, rng)

    def update(loss_fn):
        return lambda: gradient_step(loss_fn(), optimizer, params, max_grad_norm=config.max_grad_norm)

    with torch.no_grad():
        forward = best_time(lambda: q_net(batch.obs), args.iters, args.repeats)
    loss = TransitionTDLoss(config)
    ours = best_time(update(lambda: loss(q_net, target_net, batch).loss), args.iters, args.repeats)
    one_pass = best_time(update(lambda: one_pass_td_loss(q_net, target_net, batch)), args.iters, args.repeats)
    sample = best_time(lambda: buffer.sample(config.batch_size, rng), args.iters, args.repeats)
    print(f"forward, batch {config.batch_size}:                  {forward * 1e6:7.0f} us")
    print(f"update, separate no-grad next-action pass: {ours * 1e6:7.0f} us")
    print(f"update, one pass over [obs; next_obs]:     {one_pass * 1e6:7.0f} us  ({one_pass / ours:.2f}x)")
    print(f"replay sample, batch {config.batch_size}:             {sample * 1e6:7.0f} us")


if __name__ == "__main__":
    main()
