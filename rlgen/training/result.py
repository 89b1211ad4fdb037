"""What every trainer returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainResult:
    """Where a run wrote, how far it got, and what it measured.

    Attributes:
        run_dir: the run's directory.
        checkpoint: its newest checkpoint file.
        step: environment steps (DQN) or optimisation steps (generative) done.
        metrics: the final ``eval/`` metrics by TensorBoard tag.
        history: tag -> values, one per log step (generative trainers).
        interrupted: Ctrl-C / SIGTERM stopped the run before its budget.
        wall_seconds: time the call took.
    """

    run_dir: Path
    checkpoint: Path | None
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    interrupted: bool = False
    wall_seconds: float = 0.0

    @property
    def global_step(self) -> int:
        return self.step

    @property
    def eval_mean(self) -> float | None:
        """DQN: the final evaluation's mean return (None if there was none)."""
        return self.metrics.get("eval/episodic_return")

    @property
    def eval_std(self) -> float | None:
        return self.metrics.get("eval/episodic_return_std")
