"""Random state a run owns: its own torch / numpy / python streams, saved with its checkpoint.

Library code draws from torch's, numpy's and python's global generators in many
places (``nn.Linear`` initialisation, dropout, ``torch.randn``, DataLoader
shuffling). Threading a generator through all of them is not possible, so a run
*owns* a set of global states instead and swaps them in while it works:

    run_rng = RunRNG(seed)
    with run_rng.active():      # the globals now hold this run's streams
        net = build(...)        # init draws from the run's stream

torch's stream is swapped in and out around every block; the rest only when
another run was active last (see ``active``). Two runs stepped alternately in
one process (many seeds, tests) each see exactly the streams they see alone. Other generators a run uses (the replay / exploration
``numpy.random.Generator``, the environments' own) are owned outright and saved
beside these.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

# The RunRNG whose states are in the globals right now (None: nobody's; the globals are the process's).
_current: RunRNG | None = None
# What the globals held before the first run took them, given back when that run is released.
_process_state: dict[str, Any] | None = None


def _capture() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        for i, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, i)


def _seeded(seed: int) -> dict[str, Any]:
    """The states ``torch.manual_seed`` / ``np.random.seed`` / ``random.seed`` would set, without setting them."""
    saved = _capture()
    try:
        torch.manual_seed(seed)  # also seeds every CUDA device
        np.random.seed(seed)
        random.seed(seed)
        return _capture()
    finally:
        _restore(saved)


class RunRNG:
    """The global-generator states of one run.

    Args:
        seed: seeds the three streams as ``seed_everything(seed)`` would.
    """

    def __init__(self, seed: int):
        self._state = _seeded(seed)
        self._inside = False

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this run's streams the globals while the block runs.

        torch's CPU stream (what initialisation, dropout and ``torch.randn`` draw from)
        is swapped in and out on every call (about 1 us each way), so draws made
        between the run's steps never touch it. numpy's and python's legacy streams
        and CUDA's (rlgen itself never draws from the first two) are swapped only when
        another run was active last (about 60 us), so a lone run pays nothing for them.
        """
        global _current, _process_state
        if _current is not self:
            if _current is not None:  # its torch stream is already back in its state
                _current._state = {**_capture(), "torch": _current._state["torch"]}
            elif _process_state is None:
                _process_state = _capture()
            _restore(self._state)
            _current = self
        outside = torch.get_rng_state()
        torch.set_rng_state(self._state["torch"])
        self._inside = True
        try:
            yield
        finally:
            self._inside = False
            self._state["torch"] = torch.get_rng_state()
            torch.set_rng_state(outside)

    def release(self) -> None:
        """The run is over: keep its final states and give the globals back to the process."""
        global _current, _process_state
        if _current is self:
            self._state = {**_capture(), "torch": self._state["torch"]}
            _current = None
            if _process_state is not None:
                _restore({**_process_state, "torch": torch.get_rng_state()})
                _process_state = None

    def _latest(self) -> dict[str, Any]:
        if _current is not self:
            return self._state
        # Inside active() the globals hold the run's torch stream; outside, self._state does.
        return {**_capture(), "torch": torch.get_rng_state() if self._inside else self._state["torch"]}

    # -- saving ------------------------------------------------------------------------------

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON part, tensors) that restore these streams exactly."""
        state = self._latest()
        kind, keys, pos, has_gauss, cached = state["numpy"]
        version, internal, gauss = state["python"]
        tensors = {"run_rng_torch": state["torch"]}
        for i, cuda_state in enumerate(state.get("cuda", [])):
            tensors[f"run_rng_cuda_{i}"] = cuda_state
        meta = {
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss],
            "num_cuda": len(state.get("cuda", [])),
        }
        return meta, tensors

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_dict`; takes effect the next time the run is active."""
        global _current
        kind, keys, pos, has_gauss, cached = meta["numpy"]
        version, internal, gauss = meta["python"]
        state: dict[str, Any] = {
            "torch": tensors["run_rng_torch"].cpu().to(torch.uint8),
            "numpy": (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
            "python": (version, tuple(internal), gauss),
        }
        if meta.get("num_cuda"):
            state["cuda"] = [tensors[f"run_rng_cuda_{i}"].cpu().to(torch.uint8) for i in range(meta["num_cuda"])]
        self._state = state
        if _current is self:
            _restore(state)  # the torch stream too; active() swaps it back out when its block ends

