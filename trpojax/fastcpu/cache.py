"""The executable cache: compiled programs on disk under a key that needs no tracing.

JAX's persistent compilation cache still needs every program traced and lowered to find it.
:class:`ExecutableCache` skips that: it stores each compiled executable (serialised by
``jax.experimental.serialize_executable``) under a key made of everything that determines the program without
tracing it: the hash of trpojax's own source files, the versions of jax, jaxlib, flax, optax, gymnax and chex,
the backend and its devices, ``XLA_FLAGS`` and JAX's configuration, the run config's static fields and shapes
(its pytree structure), the program and its compile options. Any change to these is a miss, and a miss (or an
unreadable entry) just compiles as usual and overwrites the entry. Entries are written atomically; the oldest
beyond :data:`MAX_ENTRIES` are removed. The cache holds pickled files, so it trusts its directory as much as
JAX trusts its own cache directory.

Only fresh compilations are stored, and before their first run (XLA:CPU cannot serialise an executable that
has run): an executable JAX itself loaded from its persistent cache serialises without its kernels
(:func:`trpojax.fastcpu.compile.compile_programs` names programs after their key so that both caches miss
together).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import tempfile
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

import jax

from trpojax.config import Config

MAX_ENTRIES = 64
EXECUTABLES_SUBDIR = "trpojax-executables"  # inside the JAX compilation cache directory
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "gymnax", "chex", "numpy")
_FORMAT = 1


@cache
def source_hash() -> str:
    """sha256 of every ``.py`` file of the trpojax package (paths and contents)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def _environment() -> str:
    """Everything outside the run config and trpojax's source that changes a compiled program."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    settings = {k: repr(v) for k, v in sorted(jax.config.values.items()) if "cache" not in k and "log" not in k}
    return json.dumps(
        {
            "format": _FORMAT,
            "source": source_hash(),
            "versions": versions,
            "backend": jax.default_backend(),
            "devices": [d.device_kind for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "jax_config": settings,
        },
        sort_keys=True,
    )


class ExecutableCache:
    """Compiled executables on disk, keyed without tracing (see the module docstring).

    Args:
        directory: where entries live (created on first store).
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._pending: list[tuple[str, Any, Any]] = []  # see store_later
        self._lock = threading.Lock()

    def store_later(self, key: str, compiled: Any, extra: Any = None) -> None:
        """Queue ``compiled`` for :meth:`store` by a later :meth:`write_pending`, before its first run.

        Serialising an executable holds the GIL throughout, so :func:`compile_programs` does it while its
        thread would only wait, rather than beside the tracing of the next program. It must happen before the
        executable first runs: XLA:CPU then adds runtime state that cannot be serialised (such a store fails,
        and only costs the next run a compile).
        """
        with self._lock:
            self._pending.append((key, compiled, extra))

    def write_pending(self) -> int:
        """:meth:`store` the queued entries now, on this thread; returns how many."""
        with self._lock:
            pending, self._pending = self._pending, []
        for entry in pending:
            self.store(*entry)
        return len(pending)

    def key(self, config: Config, program: str, options: dict[str, Any] | None) -> str:
        """The entry name of ``program`` (e.g. ``"chunk-7"``) compiled with ``options`` for ``config``."""
        material = json.dumps(
            [_environment(), repr(jax.tree.structure(config)), program, sorted((options or {}).items())],
            default=repr,
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def load(self, key: str) -> tuple[Any, Any] | None:
        """``(compiled, extra)`` stored under ``key``, or None when absent or unreadable."""
        from jax.experimental import serialize_executable

        path = self.directory / f"{key}.pkl"
        try:
            with path.open("rb") as f:
                serialized, in_tree, out_tree, extra = pickle.load(f)
            compiled = serialize_executable.deserialize_and_load(serialized, in_tree, out_tree)
        except Exception:  # absent, truncated, from another jaxlib...: compile instead
            return None
        os.utime(path)
        return compiled, extra

    def store(self, key: str, compiled: Any, extra: Any = None) -> None:
        """Save ``compiled`` (a ``jax.stages.Compiled``) under ``key``, atomically; never raises."""
        from jax.experimental import serialize_executable

        try:
            payload = pickle.dumps((*serialize_executable.serialize(compiled), extra))
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, self.directory / f"{key}.pkl")
            entries = sorted(self.directory.glob("*.pkl"), key=lambda p: p.stat().st_mtime)
            for old in entries[:-MAX_ENTRIES]:
                old.unlink(missing_ok=True)
            for stale in self.directory.glob("*.tmp"):  # left by a process killed mid-write
                if time.time() - stale.stat().st_mtime > 600:
                    stale.unlink(missing_ok=True)
        except Exception:  # a full disk or an unserialisable executable only costs the next run a compile
            pass
