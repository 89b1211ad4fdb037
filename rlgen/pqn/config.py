"""PQN hyperparameters: one typed dataclass, filled from ``agents/pqn.yml`` and ``--set``.

Names follow CleanRL's ``pqn.py`` where it has them (``num_steps``, ``update_epochs``,
``num_minibatches``, ``q_lambda``) and rlgen's DQN config elsewhere (the
``exploration_*`` schedule, ``backbone``, evaluation and checkpoint fields), so
the shared schedules, evaluation, export and ``rlgen eval`` read both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rlgen.backbones import BackboneConfig
from rlgen.backbones.config import SEQUENCE_KINDS
from rlgen.config import at_least, between, check_types
from rlgen.errors import InputError
from rlgen.training.transfer import TransferConfig


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


def _layer_norm_mlp() -> BackboneConfig:
    return BackboneConfig(kind="mlp", hidden_sizes=[128, 128], layer_norm=True)


@dataclass
class PQNConfig:
    env_id: str = _help("Gymnasium environment id.", default="CartPole-v1")
    total_timesteps: int = _help("Environment steps to train for (all copies together).", default=500_000)
    num_envs: int = _help("Environment copies stepped together; each rollout has num_envs * num_steps steps.",
                          default=32)
    seed: int = _help("Random seed of the network, exploration, minibatches and environments.", default=0)
    num_steps: int = _help("Rollout length T per environment copy between updates.", default=32)
    update_epochs: int = _help("Passes over each rollout.", default=4)
    num_minibatches: int = _help("Minibatches each pass is split into.", default=4)
    gamma: float = _help("Discount factor.", default=0.99)
    q_lambda: float = _help("lambda of the Q(lambda) returns (0 = one-step targets, 1 = Monte Carlo).",
                            default=0.65)
    loss: Literal["mse", "huber"] = _help("TD loss; PQN uses the squared error.", default="mse")
    learning_rate: float = _help("Optimizer learning rate.", default=2.5e-4)
    lr_schedule: Literal["constant", "linear", "cosine"] = _help(
        "Learning-rate schedule over the gradient steps of the run (PQN: linear to 0).", default="linear")
    lr_final_factor: float = _help("Linear/cosine schedules end at learning_rate * this.", default=0.0)
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = _help("Optimizer by name.", default="adam")
    adam_eps: float = _help("Adam epsilon.", default=1e-8)
    max_grad_norm: float = _help("Gradient norm clip; 0 disables.", default=10.0)
    exploration_fraction: float = _help("Share of total_timesteps over which epsilon decays.", default=0.5)
    exploration_initial_eps: float = _help("Epsilon at the start.", default=1.0)
    exploration_final_eps: float = _help("Epsilon after the decay.", default=0.05)
    exploration_schedule: Literal["linear", "exponential"] = _help("Shape of the epsilon decay.", default="linear")
    backbone: BackboneConfig = _help("Feature extractor (rlgen.backbones); PQN wants layer_norm=true.",
                                     default_factory=_layer_norm_mlp)
    transfer: TransferConfig = _help("Start part of the Q-network (e.g. q_net.backbone) from another run's "
                                     "checkpoint; frozen or fine-tuned (rlgen.training.transfer).",
                                     default_factory=TransferConfig)
    dueling: bool = _help("Dueling head: Q = V + A - mean(A).", default=False)
    precision: Literal["fp32", "bf16", "fp16"] = _help("Autocast precision of updates (CUDA only).", default="fp32")
    compile: bool = _help("torch.compile the Q-network.", default=False)
    eval_episodes: int = _help("Deterministic episodes of the final evaluation.", default=100)
    eval_freq: int = _help("Environment steps between evaluations during training; 0 = final only.", default=0)
    eval_during_episodes: int = _help("Episodes per evaluation during training.", default=10)
    eval_in_background: bool = _help(
        "Play the evaluations during training in a worker process on another core while training goes on "
        "(same scores); used when the run trains on one CPU thread and a second core is free.", default=True,
    )
    checkpoint_freq: int = _help("Environment steps between checkpoints (at rollout ends); 0 = at the end only.",
                                 default=0)
    keep_checkpoints: int = _help("Checkpoints kept in the run's checkpoints/ folder.", default=3)
    log_interval: int = _help("Environment steps between loss/Q-value scalars.", default=10_000)
    capture_video: bool = _help("Record an evaluation episode video into TensorBoard at the end.", default=False)
    deterministic: bool = _help("torch deterministic algorithms (slower on GPU).", default=False)
    cpu_threads: int = _help("Torch CPU threads; 0 = 1 for MLP backbones, torch's default otherwise.", default=0)

    def __post_init__(self) -> None:  # every value is checked before any step
        self.validate()

    def validate(self) -> None:
        check_types(self)
        at_least(self, 1, "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                 "log_interval", "keep_checkpoints")
        at_least(self, 0, "seed", "eval_episodes", "eval_freq", "checkpoint_freq", "cpu_threads", "max_grad_norm",
                 "lr_final_factor")
        between(self, 0.0, 1.0, "gamma", "q_lambda", "exploration_initial_eps", "exploration_final_eps",
                "exploration_fraction")
        for name in ("learning_rate", "adam_eps"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name}={getattr(self, name)} must be > 0")
        if self.num_envs * self.num_steps < self.num_minibatches:
            raise InputError(f"num_minibatches={self.num_minibatches} is more than the {self.num_envs * self.num_steps} "
                             "steps of a rollout (num_envs * num_steps)")
        if self.backbone.kind in SEQUENCE_KINDS:
            raise InputError(f"backbone.kind={self.backbone.kind!r}: rlgen's PQN trains feed-forward Q-networks "
                             "(mlp, small_cnn, nature_cnn, impala_cnn); memory tasks train with train-dqn")
        if self.eval_freq > 0 and self.eval_during_episodes < 1:
            raise InputError(f"eval_during_episodes={self.eval_during_episodes} must be >= 1 when eval_freq > 0")
        if self.seed >= 2**32:
            raise InputError(f"seed={self.seed} must be in [0, 2**32 - 1]")
        from rlgen.dqn.config import MAX_TIMESTEPS

        if self.total_timesteps > MAX_TIMESTEPS:
            raise InputError(f"total_timesteps={self.total_timesteps:,} is beyond any real budget "
                             f"(at most {MAX_TIMESTEPS:,}); check the number of zeros")


RESUMABLE_FIELDS = ("total_timesteps", "eval_episodes", "eval_freq", "eval_during_episodes", "log_interval",
                    "checkpoint_freq", "keep_checkpoints", "capture_video", "eval_in_background", "cpu_threads")
