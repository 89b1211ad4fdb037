"""Reporting many seeds as the field now asks (Agarwal et al. 2021, "Deep RL at the Edge of the
Statistical Precipice"): the interquartile mean with a stratified-bootstrap confidence interval,
beside the mean, std, every seed's score and how many solved.

Scores are an array (runs, tasks); with one task the stratified bootstrap resamples runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of all scores (``scipy.stats.trim_mean(x, 0.25)``,
    which drops ``int(0.25 n)`` scores at each end)."""
    flat = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    cut = int(0.25 * flat.size)
    return float(flat[cut:flat.size - cut].mean())


def stratified_bootstrap_ci(scores: np.ndarray, statistic=iqm, reps: int = 2000, confidence: float = 0.95,
                            seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over ``reps`` resamples that redraw the runs of each task
    (column) with replacement, independently per task."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, runs, size=(reps, runs, tasks))
    resampled = np.take_along_axis(scores[None], picks, axis=1)  # (reps, runs, tasks)
    values = np.array([statistic(r) for r in resampled])
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class GroupSummary:
    """One task's final scores over seeds."""

    env_id: str
    seeds: list[int]
    returns: list[float]
    threshold: float | None  # the env's solved threshold, if it has one
    mean: float
    std: float
    iqm: float
    iqm_ci95: tuple[float, float]
    solved: int | None

    @classmethod
    def of(cls, env_id: str, seeds: list[int], returns: list[float], threshold: float | None) -> GroupSummary:
        scores = np.asarray(returns, dtype=np.float64)
        solved = int((scores >= threshold).sum()) if threshold is not None else None
        return cls(env_id, list(seeds), [float(r) for r in scores], threshold, float(scores.mean()),
                   float(scores.std()), iqm(scores), stratified_bootstrap_ci(scores), solved)

    def lines(self) -> list[str]:
        """The terminal summary: every seed, then the aggregates."""
        per_seed = ", ".join(f"{s}: {r:.1f}" for s, r in zip(self.seeds, self.returns))
        lines = [f"{self.env_id}, {len(self.seeds)} seeds: {per_seed}"]
        solved = (f"; solved (>= {self.threshold:g}) {self.solved}/{len(self.seeds)}"
                  if self.solved is not None else "")
        lines.append(f"mean {self.mean:.2f} +/- {self.std:.2f} (std); IQM {self.iqm:.2f} "
                     f"[95% CI {self.iqm_ci95[0]:.2f}, {self.iqm_ci95[1]:.2f}] (stratified bootstrap){solved}")
        return lines

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    def log(self, logger, step: int) -> None:
        """The aggregates as TensorBoard scalars (``group/*``) and the per-seed table as text."""
        for name in ("mean", "std", "iqm"):
            logger.scalar(f"group/{name}", getattr(self, name), step)
        logger.scalar("group/iqm_ci95_low", self.iqm_ci95[0], step)
        logger.scalar("group/iqm_ci95_high", self.iqm_ci95[1], step)
        if self.solved is not None:
            logger.scalar("group/solved", self.solved, step)
        rows = "\n".join(f"|{s}|{r:.2f}|" for s, r in zip(self.seeds, self.returns))
        logger.text("group/returns", f"|seed|return|\n|-|-|\n{rows}", step)
