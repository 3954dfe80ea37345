"""trpojax: trust-region and Hessian-aided policy-gradient training in JAX.

The public API, re-exported explicitly; the layers, bottom to top (README, "Architecture"):
:mod:`trpojax.core` (pure maths: ``linalg``, ``estimators``, ``tabular``, ``distributions``, ``returns``,
...), :mod:`trpojax.envs` (the environment interface, gymnax, rollouts), :mod:`trpojax.networks`,
:mod:`trpojax.algos` (TRPO, NPG, REINFORCE, N-PG-IGT, (N-)HARPG and their registry), :mod:`trpojax.config`,
:mod:`trpojax.trainer` (``make_train``), :mod:`trpojax.fastcpu`, :mod:`trpojax.train` (the run loop and
``python -m trpojax.train``), :mod:`trpojax.sweep`.

The core modules are also importable under their old names: ``from trpojax import linalg, estimators,
tabular`` (and ``distributions``, ``returns``, ``schedules``, ``stats``).
"""

from trpojax import algos, config, envs, networks, train, trainer
from trpojax.algos import AlgorithmSpec, Learner, Networks, TrainState, registry
from trpojax.config import Config, ConfigError
from trpojax.config import load as load_config
from trpojax.core import distributions, estimators, linalg, returns, schedules, stats, tabular
from trpojax.core.distributions import Categorical, DiagGaussian
from trpojax.core.linalg import CGInfo, conjugate_gradient, fisher_vector_product, hessian_vector_product
from trpojax.envs import make_env
from trpojax.trainer import make_train, make_trainer, seed_keys

__version__ = "0.1.0"

__all__ = [
    "AlgorithmSpec",
    "CGInfo",
    "Categorical",
    "Config",
    "ConfigError",
    "DiagGaussian",
    "Learner",
    "Networks",
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
    "schedules",
    "seed_keys",
    "stats",
    "tabular",
    "train",
    "trainer",
]
