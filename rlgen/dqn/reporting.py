"""What both DQN loops (feed-forward and recurrent) report: episodes, losses, SPS, the bar."""

from __future__ import annotations

import time

import numpy as np
import torch

from rlgen.training import ProgressBar, RunLogger


class TrainingReport:
    """Accumulates between log windows so the hot loop only adds tensors (no host sync).

    Args:
        logger: the run's TensorBoard logger.
        bar: the progress bar, updated with the recent return, epsilon and steps/s.
        log_interval: environment steps between scalar writes.
        global_step: the step the run starts (or resumes) at.
        device: where the loss sums live.
        keep_returns: how many recent episode returns to keep (for the bar and keep_best).
    """

    def __init__(self, logger: RunLogger, bar: ProgressBar, log_interval: int, global_step: int,
                 device: torch.device, keep_returns: int = 20):
        self.logger, self.bar, self.log_interval = logger, bar, log_interval
        self.keep_returns = keep_returns
        self.recent_returns: list[float] = []
        self.loss_sum = torch.zeros((), device=device)
        self.q_sum = torch.zeros((), device=device)
        self.count = 0
        self.next_log = global_step + log_interval
        self.sps_time, self.sps_step = time.perf_counter(), global_step

    def episodes(self, infos: dict, global_step: int) -> bool:
        """Log the episodes that ended in this vector step; True if any did."""
        if "episode" not in infos:
            return False
        finished = infos["_episode"]
        for ret, length in zip(infos["episode"]["r"][finished], infos["episode"]["l"][finished]):
            self.logger.scalar("charts/episodic_return", float(ret), global_step)
            self.logger.scalar("charts/episodic_length", int(length), global_step)
            self.recent_returns.append(float(ret))
        self.recent_returns = self.recent_returns[-self.keep_returns:]
        return bool(finished.any())

    def reset_clock(self, global_step: int) -> None:
        """Steps/s count from here (after set-up, or a resume)."""
        self.sps_time, self.sps_step = time.perf_counter(), global_step

    def state_dict(self) -> dict:
        """What a resumed run needs to report (and keep_best) as the uninterrupted one would."""
        return {"recent_returns": self.recent_returns, "next_log": self.next_log, "count": self.count,
                "loss_sum": float(self.loss_sum), "q_sum": float(self.q_sum)}

    def load_state_dict(self, state: dict) -> None:
        self.recent_returns = [float(r) for r in state["recent_returns"]]
        self.next_log, self.count = int(state["next_log"]), int(state["count"])
        self.loss_sum.fill_(state["loss_sum"]), self.q_sum.fill_(state["q_sum"])

    def share_sums(self, loss_sum: torch.Tensor, q_sum: torch.Tensor) -> None:
        """Accumulate into ``loss_sum`` and ``q_sum`` (0-d views into a batch of runs' sums, which
        the batch adds to for all its runs in one op; it then counts updates with ``count += 1``)."""
        loss_sum.copy_(self.loss_sum), q_sum.copy_(self.q_sum)
        self.loss_sum, self.q_sum = loss_sum, q_sum

    def update(self, loss: torch.Tensor, q_mean: torch.Tensor) -> None:
        self.loss_sum += loss.detach()
        self.q_sum += q_mean
        self.count += 1

    def maybe_log(self, global_step: int, epsilon: float, learning_rate: float) -> None:
        """Write the window's scalars once ``log_interval`` steps have passed."""
        if global_step < self.next_log:
            return
        self.next_log += self.log_interval
        now = time.perf_counter()
        sps = (global_step - self.sps_step) / max(now - self.sps_time, 1e-9)
        self.logger.scalar("charts/SPS", sps, global_step)
        self.logger.scalar("charts/epsilon", epsilon, global_step)
        self.logger.scalar("charts/learning_rate", learning_rate, global_step)
        if self.count:
            self.logger.scalar("losses/td_loss", float(self.loss_sum) / self.count, global_step)
            self.logger.scalar("losses/q_values", float(self.q_sum) / self.count, global_step)
            self.loss_sum.zero_(), self.q_sum.zero_()
            self.count = 0
        mean_return = float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")
        self.bar.update(0, ret=mean_return, eps=epsilon, sps=sps)
        self.sps_time, self.sps_step = now, global_step
