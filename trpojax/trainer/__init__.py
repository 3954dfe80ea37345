"""The run as pure programs: ``make_train(config) -> train(key)``, the seed-vmapped trainer, chunking,
and the plain compile path (:mod:`~trpojax.trainer.program`, :mod:`~trpojax.trainer.chunks`)."""

from __future__ import annotations

from trpojax.trainer.chunks import chunk_lengths, chunk_schedule, remaining_lengths
from trpojax.trainer.program import (
    EVAL_KEY_SALT,
    PlainPath,
    Programs,
    Trainer,
    eval_keys,
    evaluation_fn,
    make_evaluate,
    make_learner,
    make_train,
    make_trainer,
    seed_keys,
    state_template,
    strong_types,
)

__all__ = [
    "EVAL_KEY_SALT",
    "PlainPath",
    "Programs",
    "Trainer",
    "chunk_lengths",
    "chunk_schedule",
    "eval_keys",
    "evaluation_fn",
    "make_evaluate",
    "make_learner",
    "make_train",
    "make_trainer",
    "remaining_lengths",
    "seed_keys",
    "state_template",
    "strong_types",
]
