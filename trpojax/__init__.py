"""trpojax: trust-region and Hessian-aided policy-gradient training in JAX.

The public API, re-exported explicitly. Modules: :mod:`trpojax.config` (typed configs), :mod:`trpojax.train`
(``make_train``), :mod:`trpojax.algos` (TRPO, NPG, REINFORCE, N-PG-IGT, (N-)HARPG: each a ``Config``, pure
``init`` / ``update``), :mod:`trpojax.linalg` (CG, Hessian- and Fisher-vector products),
:mod:`trpojax.estimators` (g(tau, theta), B(tau, theta) v), :mod:`trpojax.tabular` (exact finite MDPs),
:mod:`trpojax.distributions`, :mod:`trpojax.networks`, :mod:`trpojax.envs`, :mod:`trpojax.rollout`,
:mod:`trpojax.returns`.
"""

from trpojax import (
    algos,
    config,
    distributions,
    envs,
    estimators,
    linalg,
    networks,
    returns,
    rollout,
    tabular,
)
from trpojax.algos import Learner, TrainState, registry
from trpojax.config import Config, ConfigError
from trpojax.config import load as load_config
from trpojax.distributions import Categorical, DiagGaussian
from trpojax.envs import make_env
from trpojax.linalg import CGInfo, conjugate_gradient, fisher_vector_product, hessian_vector_product

__version__ = "0.1.0"

# trpojax.train is imported on first use, not here: ``python -m trpojax.train`` must find it unimported.
_FROM_TRAIN = ("make_train", "make_trainer", "seed_keys")


def __getattr__(name: str):
    """Resolve ``trpojax.train`` and its re-exported functions lazily."""
    if name == "train" or name in _FROM_TRAIN:
        import importlib

        train = importlib.import_module("trpojax.train")
        return train if name == "train" else getattr(train, name)
    raise AttributeError(f"module 'trpojax' has no attribute {name!r}")


__all__ = [
    "CGInfo",
    "Categorical",
    "Config",
    "ConfigError",
    "DiagGaussian",
    "Learner",
    "TrainState",
    "algos",
    "config",
    "conjugate_gradient",
    "distributions",
    "envs",
    "estimators",
    "fisher_vector_product",
    "hessian_vector_product",
    "linalg",
    "load_config",
    "make_env",
    "make_train",
    "make_trainer",
    "networks",
    "registry",
    "returns",
    "rollout",
    "seed_keys",
    "tabular",
    "train",
]
