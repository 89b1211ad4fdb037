"""A sum tree over priorities, vectorised over a batch with NumPy."""

from __future__ import annotations

import numpy as np

from rlgen.errors import InputError


class SumTree:
    """Binary tree whose leaves hold priorities and whose nodes hold sums of their children.

    ``sample`` draws leaves with probability proportional to their priority in
    O(B log N) NumPy work for a batch of B, stratified into B equal segments of
    the total mass (Schaul et al. 2016, Appendix B.2.1).
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.depth = int(np.ceil(np.log2(max(capacity, 2))))
        self.first_leaf = 2**self.depth - 1
        self.nodes = np.zeros(2 ** (self.depth + 1) - 1, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[0])

    def leaves(self, indices: np.ndarray) -> np.ndarray:
        return self.nodes[self.first_leaf + np.asarray(indices)]

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaf priorities, then recompute the sums on their paths to the root."""
        nodes = self.first_leaf + np.asarray(indices, dtype=np.int64)
        self.nodes[nodes] = priorities
        for _ in range(self.depth):
            nodes = np.unique((nodes - 1) // 2)
            self.nodes[nodes] = self.nodes[2 * nodes + 1] + self.nodes[2 * nodes + 2]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """Leaf indices where the prefix sum of priorities first exceeds ``mass``."""
        nodes = np.zeros(len(mass), dtype=np.int64)
        mass = np.asarray(mass, dtype=np.float64).copy()
        for _ in range(self.depth):
            left = 2 * nodes + 1
            left_mass = self.nodes[left]
            go_right = mass >= left_mass
            mass = np.where(go_right, mass - left_mass, mass)
            nodes = np.where(go_right, left + 1, left)
        return nodes - self.first_leaf

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        if self.total <= 0:
            raise InputError("cannot sample from an empty sum tree")
        bounds = np.linspace(0.0, self.total, batch_size + 1)
        mass = rng.uniform(bounds[:-1], bounds[1:])
        leaves = self.find(mass)
        # Floating-point round-off can land on a zero-priority leaf at a boundary; redraw it.
        bad = self.leaves(leaves) <= 0
        while bad.any():
            leaves[bad] = self.find(rng.uniform(0.0, self.total, size=int(bad.sum())))
            bad = self.leaves(leaves) <= 0
        return np.minimum(leaves, self.capacity - 1)


class Priorities:
    """Proportional prioritized replay's bookkeeping (Schaul et al. 2016), for any buffer of n items.

    New items get the largest priority seen so far; sampled ones get
    ``(|error| + eps) ** alpha``. Importance weights ``(N P(i)) ** -beta`` are
    normalised by their maximum in the batch. The transition and the sequence
    buffer both hold one.
    """

    def __init__(self, n: int, alpha: float, eps: float):
        self.alpha, self.eps = alpha, eps
        self.tree = SumTree(n)
        self.max_priority = 1.0

    def add(self, flat: np.ndarray, live: np.ndarray) -> None:
        """Items ``flat`` become sampleable where ``live`` (at the top priority), unsampleable elsewhere."""
        self.tree.update(flat, np.where(live, self.max_priority, 0.0))

    def sample(self, batch_size: int, rng: np.random.Generator, count: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
        """(flat indices (B,), importance weights (B,) float32) of ``count`` sampleable items."""
        flat = self.tree.sample(batch_size, rng)
        probs = self.tree.leaves(flat) / self.tree.total
        weights = (count * probs) ** (-beta)
        return flat, (weights / weights.max()).astype(np.float32)

    def update(self, indices: np.ndarray, errors: np.ndarray) -> None:
        priorities = (np.abs(errors) + self.eps) ** self.alpha
        self.tree.update(indices, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        return {"tree": self.tree.nodes}, {"max_priority": repr(self.max_priority)}

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        self.tree.nodes[...] = arrays["tree"]
        self.max_priority = float(meta["max_priority"])
