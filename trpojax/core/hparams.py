"""Config dataclasses that are also pytrees: float fields are traced leaves, everything else is static.

A config class declared with :func:`config_dataclass` is a frozen dataclass registered with
``jax.tree_util.register_dataclass``. Its ``float`` fields (learning rates, ``max_kl``, ``gamma``, ...)
are pytree leaves, so a stacked config can be ``jax.vmap``-ed to sweep them inside one compiled program;
``int``, ``bool``, ``str`` and tuple fields fix shapes and code paths and are static metadata; nested
config dataclasses are subtrees. A field declared ``host`` (a setting only the host loop reads, such as a
run's experiment trackers) is not part of the pytree at all, so it changes neither a compiled program nor
its cache key; a config rebuilt from leaves (``jax.tree.map``, inside a jitted function) has its default.
Each field carries a one-line doc and its allowed range in ``dataclasses.field`` metadata, which
:mod:`trpojax.config` uses to validate input and name what is allowed.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import jax


def hp(
    default: Any,
    doc: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: tuple[Any, ...] | None = None,
    static: bool = False,
    host: bool = False,
) -> Any:
    """Declare a config field with its documentation and allowed range.

    Args:
        default: default value (tuples for sequences, so configs stay hashable).
        doc: one line describing the field; shown in errors and docs.
        gt, ge, lt, le: exclusive/inclusive numeric bounds (applied to every element of a tuple).
        choices: the allowed values, for strings and other enumerations.
        static: keep a float field static (not sweepable), e.g. when it is used outside traced code.
        host: leave the field out of the pytree (read only by the host; see the module docstring).
    """
    meta = {"doc": doc, "gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "static": static, "host": host}
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    """Declare a nested config section defaulting to ``cls()``."""
    return dataclasses.field(default_factory=cls, metadata={"doc": doc})


def is_config_class(tp: Any) -> bool:
    """True for classes declared with :func:`config_dataclass`."""
    return isinstance(tp, type) and getattr(tp, "__trpojax_config__", False)


def config_dataclass(cls: type) -> type:
    """Make ``cls`` a frozen dataclass and register it as a pytree (floats traced, host fields left out, the
    rest static)."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    data = traced_fields(cls)
    host = [f.name for f in dataclasses.fields(cls) if f.metadata.get("host", False)]
    meta = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.name not in host]
    cls.__trpojax_config__ = True
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta, drop_fields=host)
    return cls


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotation of each field of a config class."""
    return typing.get_type_hints(cls)


def traced_fields(cls: type) -> list[str]:
    """Names of the fields of config class ``cls`` that are pytree leaves: ``float`` fields not declared
    ``static`` (traced hyperparameters) and nested config sections."""
    hints = typing.get_type_hints(cls)
    return [
        f.name
        for f in dataclasses.fields(cls)
        if (hints[f.name] is float and not f.metadata.get("static", False)) or is_config_class(hints[f.name])
    ]


class TracedOnly:
    """Stands in for a traced hyperparameter in a config that must only be read for its static fields.

    Any use as a number (arithmetic, comparison, ``float()``, conversion to an array) raises ``TypeError``
    naming the field: the value has to be read from the run config passed to the traced function, or a
    sweep over it would silently run one value.
    """

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{self.path} is a traced hyperparameter: read it from the run config passed to init/step "
            "(so sweeps over it work), not from the config the learner was built with"
        )

    def __repr__(self) -> str:
        return f"TracedOnly({self.path!r})"


for _name in (
    "__float__", "__int__", "__bool__", "__index__", "__array__", "__jax_array__", "__neg__", "__pos__",
    "__abs__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__pow__", "__rpow__", "__lt__", "__le__", "__gt__", "__ge__",
):
    setattr(TracedOnly, _name, TracedOnly._refuse)


def static_view(config: Any, prefix: str = "") -> Any:
    """``config`` with every traced float field (recursively) replaced by :class:`TracedOnly`.

    Learners are built from a static view: shapes and code paths come from its static fields, and reading
    one of its float hyperparameters instead of the traced run config's raises at trace time.
    """
    cls = type(config)
    hints = typing.get_type_hints(cls)
    changes = {}
    for name in traced_fields(cls):
        path = f"{prefix}{name}"
        if is_config_class(hints[name]) or is_config_class(type(getattr(config, name))):
            changes[name] = static_view(getattr(config, name), f"{path}.")
        else:
            changes[name] = TracedOnly(path)
    return dataclasses.replace(config, **changes)
