"""Is a batched update on this CPU compute-bound? One 128x128 linear layer of N networks on batches of
128: vmapped over stacked weights (what ``--seeds`` ran before batched plans), as one baddbmm (what
``rlgen.training.stacked`` runs now), and as N separate calls; the same for a LayerNorm with each
network's own scale and shift.

    python scripts/bench_stacked_linear.py --networks 16
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.func import vmap


def timed(fn, repeats: int = 200) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, b, d = args.networks, args.batch, args.width
    x, w, bias = torch.randn(n, b, d), torch.randn(n, d, d), torch.randn(n, d)
    flops = 2 * n * b * d * d
    ways = {
        "vmapped linear (--seeds)": lambda f=vmap(torch.nn.functional.linear): f(x, w, bias),
        "one baddbmm": lambda: torch.baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2)),
        f"{n} separate linears": lambda: [torch.nn.functional.linear(x[i], w[i], bias[i]) for i in range(n)],
    }
    for name, fn in ways.items():
        seconds = timed(fn)
        print(f"{name:>34}: {seconds * 1e6:8.1f} us, {flops / seconds / 1e9:6.1f} GFLOP/s")
    scale, shift = torch.randn(n, d), torch.randn(n, d)
    norms = {
        "vmapped affine layer_norm": lambda f=vmap(lambda h, g, s: F.layer_norm(h, (d,), g, s)): f(x, scale, shift),
        "layer_norm, then scale and shift": lambda: F.layer_norm(x, (d,)) * scale.unsqueeze(1) + shift.unsqueeze(1),
        f"{n} separate layer_norms": lambda: [F.layer_norm(x[i], (d,), scale[i], shift[i]) for i in range(n)],
    }
    for name, fn in norms.items():
        print(f"{name:>34}: {timed(fn) * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
