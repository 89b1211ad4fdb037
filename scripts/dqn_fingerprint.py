"""Train a DQN (or PQN: first argument pqn) preset and print a fingerprint of its final q_net (sha256 over every tensor) and its score.

Two commits that train bit-identically print the same fingerprint, e.g. before and
after a refactor of the loop:

    git worktree add /tmp/before 759d29d
    (cd /tmp/before && PYTHONPATH=/tmp/before python "$OLDPWD/scripts/dqn_fingerprint.py" CartPole-v1 50000)
    python scripts/dqn_fingerprint.py CartPole-v1 50000

(run from /tmp/before, so that its rlgen/ is imported instead of the installed one).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile

import safetensors.torch

from rlgen.dqn import make_config
from rlgen.dqn.agent import train_function


def main() -> None:
    args = sys.argv[1:]
    algo = "dqn"
    if args[0] in ("dqn", "pqn"):  # e.g. scripts/dqn_fingerprint.py pqn CartPole-v1 30000
        algo, args = args[0], args[1:]
    env_id, steps = args[0], int(args[1])
    config = make_config(env_id, total_timesteps=steps, seed=0, overrides=args[2:], algo=algo)
    with tempfile.TemporaryDirectory() as logdir:
        result = train_function(config)(config, device="cpu", logdir=logdir, progress=False)
        tensors = safetensors.torch.load_file(str(result.checkpoint))
    digest = hashlib.sha256()
    for key in sorted(k for k in tensors if k.startswith("model/q_net/")):
        digest.update(key.encode())
        digest.update(tensors[key].numpy().tobytes())
    print(f"{algo} {env_id} {steps} steps: eval {result.eval_mean} +/- {result.eval_std}, q_net sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
