"""DQN hyperparameters: one typed dataclass, filled from ``agents/dqn.yml`` and ``--set``.

Names and meanings follow Stable-Baselines3's ``DQN`` so RL Zoo's
``hyperparams/dqn.yml`` entries carry over one to one (``net_arch`` becomes
``backbone.hidden_sizes``); the extensions SB3 lacks (double, dueling,
n-step, prioritized replay, LR schedules) are switches with the plain-DQN
value as default.
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


@dataclass
class DQNConfig:
    env_id: str = _help("Gymnasium environment id.", default="CartPole-v1")
    total_timesteps: int = _help("Environment steps to train for (all copies together).", default=50_000)
    num_envs: int = _help("Environment copies stepped together (gymnasium vector API).", default=1)
    seed: int = _help("Random seed of networks, replay sampling and environments.", default=0)
    # Replay
    buffer_size: int = _help("Transitions kept in replay.", default=100_000)
    learning_starts: int = _help("Environment steps collected before the first update (SB3).", default=100)
    batch_size: int = _help("Transitions per gradient step.", default=32)
    prioritized: bool = _help("Proportional prioritized replay (Schaul et al. 2016).", default=False)
    per_alpha: float = _help("Prioritized replay: priority exponent alpha.", default=0.6)
    per_beta0: float = _help("Prioritized replay: initial importance exponent, annealed to 1.", default=0.4)
    per_eps: float = _help("Prioritized replay: added to |TD error| so no priority is zero.", default=1e-6)
    # Targets
    gamma: float = _help("Discount factor.", default=0.99)
    n_step: int = _help("Length of the multi-step return (1 = plain DQN).", default=1)
    double_q: bool = _help("Double DQN: the online net picks the next action, the target net scores it.", default=False)
    tau: float = _help("Target update coefficient: 1 = hard copy, < 1 = Polyak averaging.", default=1.0)
    target_update_interval: int = _help("Environment steps between target updates (SB3 counts env steps).", default=10_000)
    loss: Literal["huber", "mse"] = _help("TD loss: SB3 uses huber (smooth L1).", default="huber")
    # Updates
    train_freq: int = _help("Environment steps between training phases (SB3).", default=4)
    gradient_steps: int = _help("Gradient steps per training phase; -1 = one per env step collected.", default=1)
    learning_rate: float = _help("Optimizer learning rate.", default=1e-4)
    lr_schedule: Literal["constant", "linear", "cosine", "step", "exponential"] = _help(
        "Learning-rate schedule over the gradient steps of the run.", default="constant"
    )
    lr_final_factor: float = _help("Linear/cosine schedules end at learning_rate * this.", default=0.0)
    lr_warmup_steps: int = _help("Gradient steps of linear LR warm-up.", default=0)
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = _help("Optimizer by name.", default="adam")
    adam_eps: float = _help("Adam epsilon.", default=1e-8)
    weight_decay: float = _help("Weight decay.", default=0.0)
    max_grad_norm: float = _help("Gradient norm clip (SB3 default 10); 0 disables.", default=10.0)
    # Exploration
    exploration_fraction: float = _help("Share of total_timesteps over which epsilon decays.", default=0.1)
    exploration_initial_eps: float = _help("Epsilon at the start.", default=1.0)
    exploration_final_eps: float = _help("Epsilon after the decay.", default=0.05)
    exploration_schedule: Literal["linear", "exponential"] = _help("Shape of the epsilon decay.", default="linear")
    # Network
    backbone: BackboneConfig = _help("Feature extractor (rlgen.backbones).", default_factory=BackboneConfig)
    transfer: TransferConfig = _help("Start part of the Q-network (e.g. q_net.backbone) from another run's "
                                     "checkpoint; frozen or fine-tuned (rlgen.training.transfer).",
                                     default_factory=TransferConfig)
    dueling: bool = _help("Dueling head: Q = V + A - mean(A) (Wang et al. 2016).", default=False)
    precision: Literal["fp32", "bf16", "fp16"] = _help("Autocast precision of updates (CUDA only).", default="fp32")
    compile: bool = _help("torch.compile the Q-network.", default=False)
    keep_best: bool = _help(
        "Finish with the Q-network snapshot whose last keep_best_window training episodes scored "
        "best, if they beat the final network's last ones. Costs no extra environment steps.",
        default=False,
    )
    keep_best_window: int = _help("Training episodes averaged for keep_best.", default=20)
    keep_best_by: Literal["train", "eval"] = _help(
        "What keep_best scores a network by: its last keep_best_window training episodes (no extra "
        "steps), or the evaluations every eval_freq steps (SB3's EvalCallback best model; "
        "eval_during_episodes greedy episodes each, outside the training budget).", default="train",
    )
    # Evaluation, logging, checkpoints
    eval_episodes: int = _help("Deterministic episodes of the final evaluation.", default=100)
    eval_freq: int = _help("Environment steps between evaluations during training; 0 = final only.", default=0)
    eval_during_episodes: int = _help("Episodes per evaluation during training.", default=10)
    eval_in_background: bool = _help(
        "Play the evaluations during training in a worker process on another core while training goes on "
        "(same scores); used when the run trains on one CPU thread and a second core is free.", default=True,
    )
    save_replay: bool = _help(
        "Save the replay buffer beside each checkpoint (replay.safetensors) so --resume is exact; "
        "turn off for huge image buffers.", default=True,
    )
    checkpoint_freq: int = _help("Environment steps between checkpoints; 0 = at the end only.", default=0)
    log_interval: int = _help("Environment steps between loss/Q-value scalars.", default=1_000)
    capture_video: bool = _help("Record an evaluation episode video into TensorBoard at the end.", default=False)
    deterministic: bool = _help("torch deterministic algorithms (slower on GPU).", default=False)
    cpu_threads: int = _help(
        "Torch CPU threads; 0 = 1 for MLP backbones (tiny matmuls lose to threading overhead), "
        "torch's default otherwise.", default=0,
    )
    # Memory: recurrent (lstm / gru) and transformer Q-networks (sequence replay and loss, SequenceActor)
    sequence_length: int = _help(
        "Recurrent/transformer DQN: trained steps per sampled chunk (after the burn-in).", default=16
    )
    burn_in: int = _help(
        "Recurrent DQN: chunk steps that only warm up the LSTM/GRU state, without loss or gradient "
        "(R2D2); the transformer and tcn use context_length - 1 context steps instead.", default=8,
    )
    store_state: bool = _help(
        "Recurrent DQN: start each chunk from the LSTM/GRU state stored while acting (R2D2) "
        "instead of zeros.", default=True,
    )
    context_length: int = _help(
        "Transformer / TCN DQN: observations (the newest included) that each Q-value sees, "
        "causally, never reaching back past the episode start.", default=16,
    )
    per_eta: float = _help(
        "Recurrent/transformer DQN, prioritized replay: a chunk's priority is "
        "eta * max |TD| + (1 - eta) * mean |TD| over its trained steps (R2D2).", default=0.9,
    )

    keep_checkpoints: int = _help(
        "Checkpoints kept in the run's checkpoints/ folder (the newest is also checkpoint.safetensors); "
        "only the newest keeps its replay.", default=3,
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field, its value and what is allowed.

        Runs on construction, so a bad value fails before any environment step.
        """
        check_types(self)
        at_least(self, 1, "total_timesteps", "num_envs", "buffer_size", "batch_size", "n_step", "train_freq",
                 "target_update_interval", "keep_best_window", "log_interval", "keep_checkpoints",
                 "sequence_length", "context_length")
        at_least(self, 0, "seed", "learning_starts", "lr_warmup_steps", "eval_episodes", "eval_freq",
                 "checkpoint_freq", "cpu_threads", "burn_in", "weight_decay", "max_grad_norm", "lr_final_factor",
                 "per_alpha")
        between(self, 0.0, 1.0, "gamma", "exploration_initial_eps", "exploration_final_eps", "exploration_fraction",
                "per_beta0", "per_eta")
        if self.keep_best and self.keep_best_by == "eval" and not self.eval_freq:
            raise InputError("keep_best_by=eval picks the best of the evaluations during training, but "
                             "eval_freq=0 runs none; set eval_freq (e.g. --set eval_freq=5000)")
        if self.total_timesteps > MAX_TIMESTEPS:
            raise InputError(f"total_timesteps={self.total_timesteps:,} is beyond any real budget "
                             f"(at most {MAX_TIMESTEPS:,}); check the number of zeros")
        if self.num_envs > 4096:
            raise InputError(f"num_envs={self.num_envs} is more copies than one process steps well; use <= 4096")
        if self.seed >= 2**32:
            raise InputError(f"seed={self.seed} must be in [0, 2**32 - 1] (numpy's seed range)")
        if self.batch_size > self.buffer_size:
            raise InputError(f"batch_size={self.batch_size} is larger than buffer_size={self.buffer_size}; "
                             "raise buffer_size or lower batch_size")
        if not 0.0 < self.tau <= 1.0:
            raise InputError(f"tau={self.tau} must be in (0, 1]")
        if self.gradient_steps == 0 or self.gradient_steps < -1:
            raise InputError(f"gradient_steps={self.gradient_steps} must be >= 1, or -1 (one per env step)")
        for name in ("learning_rate", "adam_eps", "per_eps"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name}={getattr(self, name)} must be > 0")
        if self.eval_freq > 0 and self.eval_during_episodes < 1:
            raise InputError(f"eval_during_episodes={self.eval_during_episodes} must be >= 1 when eval_freq > 0 "
                             "(or set eval_freq=0: evaluate at the end only)")
        if self.compile and self.backbone.kind in SEQUENCE_KINDS:
            raise InputError(
                f"compile=true with backbone.kind={self.backbone.kind!r}: Q-networks with memory "
                "change their input length per call (acting: one step, learning: whole chunks), which makes "
                "torch.compile recompile; set compile=false"
            )


# A guard against typos (an extra zero or three), far above the 200M frames of the longest Atari budgets.
MAX_TIMESTEPS = 10_000_000_000
# Fields a resumed run may change: its budget and how it reports, evaluates and saves; never what it learns with.
RESUMABLE_FIELDS = ("total_timesteps", "eval_episodes", "eval_freq", "eval_during_episodes", "log_interval",
                    "checkpoint_freq", "keep_checkpoints", "capture_video", "eval_in_background", "save_replay",
                    "cpu_threads")
