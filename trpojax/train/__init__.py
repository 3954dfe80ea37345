"""Training runs: ``python -m trpojax.train`` and the functions behind it.

The host layer above the pure programs of :mod:`trpojax.trainer` (whose public functions are re-exported
here, so ``from trpojax import train; train.make_train(cfg)`` works): :mod:`~.loop` runs a run chunk by
chunk, :mod:`~.outputs` writes metrics, plots and atomic files, :mod:`~.checkpoint` saves and restores
state, :mod:`~.trackers` feeds TensorBoard and wandb through the loop's ``progress_fn`` hook (docs/tracking.md),
:mod:`~.cli` is the command line (docs/durability.md).
"""

from __future__ import annotations

from trpojax.train import checkpoint, outputs, trackers
from trpojax.train.cli import (
    StopRequest,
    check_out_dir,
    default_cache_dir,
    enable_compilation_cache,
    main,
    stop_on_signals,
)
from trpojax.train.loop import RunInterrupted, RunResult, ValueDiverged, run
from trpojax.trainer import (
    EVAL_KEY_SALT,
    Trainer,
    chunk_lengths,
    chunk_schedule,
    eval_keys,
    evaluation_fn,
    make_evaluate,
    make_learner,
    make_train,
    make_trainer,
    remaining_lengths,
    seed_keys,
    state_template,
    strong_types,
)

__all__ = [
    "EVAL_KEY_SALT",
    "RunInterrupted",
    "RunResult",
    "StopRequest",
    "Trainer",
    "ValueDiverged",
    "check_out_dir",
    "checkpoint",
    "chunk_lengths",
    "chunk_schedule",
    "default_cache_dir",
    "enable_compilation_cache",
    "eval_keys",
    "evaluation_fn",
    "main",
    "make_evaluate",
    "make_learner",
    "make_train",
    "make_trainer",
    "outputs",
    "remaining_lengths",
    "run",
    "seed_keys",
    "state_template",
    "stop_on_signals",
    "strong_types",
    "trackers",
]
