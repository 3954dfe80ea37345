"""Save and restore the full train state of a run, atomically, and prepare a run for resuming.

A run directory ``DIR`` keeps its checkpoints in ``DIR/checkpoints/<update>/``, one directory per saved
update, each holding

- ``state.npz``: every array leaf of the seed-stacked :class:`trpojax.algos.TrainState` (parameters,
  optimiser and value-function states, algorithm recursion state, observation statistics, environment
  states, PRNG keys, update counter), keyed by its pytree path (``jax.tree_util.keystr``);
- ``config.yaml``: the resolved run config;
- ``manifest.json``: format version, update, host-side totals (``train_s``), the versions of trpojax, jax
  and jaxlib that wrote it, and the size and SHA-256 of the other files. It is written last.

A checkpoint is written into a temporary ``checkpoints/.tmp-*`` directory, every file fsynced, then the
directory is renamed to its final name, so a crash never leaves a directory that looks complete; a
checkpoint counts as complete only when its manifest exists and every listed file matches it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import yaml

from trpojax import config as config_lib
from trpojax.config import Config
from trpojax.train.outputs import write_text_atomic

FORMAT_VERSION = 1
STATE_FILE = "state.npz"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.json"
TEMP_PREFIX = ".tmp-"


class CheckpointError(Exception):
    """No usable checkpoint: missing, incomplete or corrupt. The message is one line."""


class CheckpointMismatch(CheckpointError):
    """A complete checkpoint that does not belong to the run's config (other shapes or values)."""


class Restored(NamedTuple):
    """A checkpoint loaded into memory.

    Attributes:
        path: the checkpoint directory.
        update: updates done when it was saved.
        state: the seed-stacked train state as host (numpy) arrays.
        train_s: seconds spent in training chunks up to this checkpoint (for throughput reporting).
    """

    path: Path
    update: int
    state: Any
    train_s: float


def code_versions() -> dict[str, str]:
    """The installed versions of the code a checkpoint's numbers depend on: trpojax, jax and jaxlib."""
    versions = {}
    for package in ("trpojax", "jax", "jaxlib"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def check_versions(path: str | Path, manifest: dict[str, Any]) -> None:
    """Raise :class:`CheckpointMismatch` if the checkpoint at ``path`` was written by other code versions.

    A resumed run is bit-identical to an uninterrupted one only under the same code, so a checkpoint of
    another trpojax, jax or jaxlib version is refused (manifests written before versions were recorded
    are accepted).
    """
    saved = manifest.get("versions")
    if not isinstance(saved, dict):
        return
    for package, version in code_versions().items():
        if saved.get(package, version) != version:
            raise CheckpointMismatch(
                f"checkpoint {path} was written by {package} {saved[package]}, this is {package} {version}; "
                f"resume it with {package} {saved[package]} (or start a new run)"
            )


def checkpoints_dir(run_dir: str | Path) -> Path:
    """``run_dir/checkpoints``."""
    return Path(run_dir) / "checkpoints"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _state_bytes(state: Any) -> bytes:
    leaves, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(state))
    arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def save(
    run_dir: str | Path,
    state: Any,
    config_text: str,
    *,
    update: int,
    keep: int,
    train_s: float = 0.0,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Atomically write ``state`` as ``run_dir/checkpoints/<update>`` and keep only the newest ``keep``.

    Args:
        run_dir: the run directory.
        state: the seed-stacked train state (device or host arrays).
        config_text: the resolved config as YAML (:func:`trpojax.config.dump`).
        update: updates done; names the directory.
        keep: how many of the newest checkpoints to keep (older ones are deleted after the write).
        train_s: seconds spent training so far, recorded in the manifest.
        extra: more files to write into the checkpoint (name -> bytes), listed and checksummed in the
            manifest like the others.

    Returns:
        The checkpoint directory. An existing checkpoint of the same update is replaced.
    """
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f"{TEMP_PREFIX}{update}-"))
    final = root / str(update)
    try:
        files = {STATE_FILE: _state_bytes(state), CONFIG_FILE: config_text.encode(), **(extra or {})}
        for name, data in files.items():
            _write_file(tmp / name, data)
        manifest = {
            "format": FORMAT_VERSION,
            "update": update,
            "train_s": train_s,
            "versions": code_versions(),
            "files": {
                name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in files.items()
            },
        }
        _write_file(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
        _fsync_dir(tmp)
        if final.exists():
            trash = Path(tempfile.mkdtemp(dir=root, prefix=f"{TEMP_PREFIX}old-{update}-"))
            os.replace(final, trash / "old")
            os.replace(tmp, final)
            shutil.rmtree(trash)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(run_dir, keep)
    return final


def saved_updates(run_dir: str | Path) -> list[int]:
    """Updates of the checkpoint directories in ``run_dir/checkpoints``, ascending (complete or not)."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for update in saved_updates(run_dir)[:-keep]:
        shutil.rmtree(checkpoints_dir(run_dir) / str(update))


def discard_after(run_dir: str | Path, update: int) -> None:
    """Delete checkpoints newer than ``update`` and leftover temporary directories of crashed writes."""
    root = checkpoints_dir(run_dir)
    for path in root.iterdir():
        stale = path.name.startswith(TEMP_PREFIX) or (path.name.isdigit() and int(path.name) > update)
        if path.is_dir() and stale:
            shutil.rmtree(path)


def verify(path: str | Path) -> dict[str, Any]:
    """Check that the checkpoint at ``path`` is complete and intact; return its manifest.

    Raises:
        CheckpointError: no manifest (an interrupted write), an unreadable manifest, or a listed file that
            is missing or differs in size or SHA-256 from the manifest (truncated or corrupted).
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {MANIFEST_FILE} (incomplete write)") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable {MANIFEST_FILE} ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: {MANIFEST_FILE} is not a format-{FORMAT_VERSION} trpojax manifest")
    if manifest.get("update") != int(path.name):
        raise CheckpointError(f"{path}: {MANIFEST_FILE} says update {manifest.get('update')}")
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise CheckpointError(f"{path}: {MANIFEST_FILE} lists no files")
    for name in sorted({STATE_FILE, CONFIG_FILE} | set(listed)):
        expected = listed.get(name)
        file = path / name
        if expected is None or not file.is_file():
            raise CheckpointError(f"{path}: {name} is missing")
        size, want = file.stat().st_size, expected["bytes"]
        if size != want:
            raise CheckpointError(f"{path}: {name} has {size} bytes, its manifest says {want} (truncated)")
        if _sha256(file) != expected["sha256"]:
            raise CheckpointError(f"{path}: {name} does not match its checksum (corrupted)")
    return manifest


def latest(run_dir: str | Path) -> tuple[Path, dict[str, Any], list[str]]:
    """The newest complete checkpoint of ``run_dir``.

    Returns:
        ``(path, manifest, skipped)``: ``skipped`` names each newer checkpoint that failed
        :func:`verify`, with the reason.

    Raises:
        CheckpointError: there is no checkpoint, or none is complete.
    """
    updates = saved_updates(run_dir)
    if not updates:
        raise CheckpointError(f"{checkpoints_dir(run_dir)} holds no checkpoint")
    skipped = []
    for update in reversed(updates):
        path = checkpoints_dir(run_dir) / str(update)
        try:
            return path, verify(path), skipped
        except CheckpointError as err:
            skipped.append(str(err))
    raise CheckpointError(f"no complete checkpoint in {checkpoints_dir(run_dir)}: {'; '.join(skipped)}")


def find(run_dir: str | Path, update: int) -> tuple[Path, dict[str, Any]]:
    """The checkpoint of ``update`` in ``run_dir``, verified; raises :class:`CheckpointError` otherwise."""
    path = checkpoints_dir(run_dir) / str(update)
    if not path.is_dir():
        have = ", ".join(map(str, saved_updates(run_dir))) or "none"
        raise CheckpointError(f"no checkpoint of update {update} in {path.parent} (saved: {have})")
    return path, verify(path)


def load_state(path: str | Path, template: Any) -> Any:
    """Read ``state.npz`` of a verified checkpoint into the structure of ``template``.

    Args:
        path: checkpoint directory.
        template: a pytree of arrays or ``jax.ShapeDtypeStruct`` with the expected structure, shapes and
            dtypes (e.g. ``jax.eval_shape`` of the seed-vmapped init).

    Returns:
        ``template``'s structure filled with the checkpoint's numpy arrays.

    Raises:
        CheckpointMismatch: a leaf is missing or extra, or differs in shape or dtype.
        CheckpointError: the file cannot be read as an npz archive.
    """
    path = Path(path)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(p) for p, _ in leaves]
    try:
        with np.load(path / STATE_FILE, allow_pickle=False) as data:
            stored = {name: data[name] for name in data.files}
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read {STATE_FILE} ({err})") from None
    where = f"checkpoint {path} does not fit this config"
    missing = [n for n in names if n not in stored]
    if missing:
        raise CheckpointMismatch(f"{where}: it has no {missing[0]}")
    extra = sorted(set(stored) - set(names))
    if extra:
        raise CheckpointMismatch(f"{where}: it has an unexpected {extra[0]}")
    arrays = []
    for name, (_, leaf) in zip(names, leaves, strict=True):
        array = stored[name]
        if array.shape != tuple(leaf.shape) or array.dtype != np.dtype(leaf.dtype):
            raise CheckpointMismatch(
                f"{where}: {name} is {array.dtype}{list(array.shape)} there, "
                f"{np.dtype(leaf.dtype)}{list(leaf.shape)} here"
            )
        arrays.append(array)
    return jax.tree_util.tree_unflatten(treedef, arrays)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def check_config(path: str | Path, run_config_text: str) -> None:
    """Raise :class:`CheckpointMismatch` if the checkpoint at ``path`` was saved under another config."""
    path = Path(path)
    saved = _flat(yaml.safe_load((path / CONFIG_FILE).read_text()))
    wanted = _flat(yaml.safe_load(run_config_text))
    for key in sorted(set(saved) | set(wanted)):
        if saved.get(key) != wanted.get(key):
            raise CheckpointMismatch(
                f"checkpoint {path} was saved with a different config: {key} is "
                f"{saved.get(key)!r} there, {wanted.get(key)!r} in the run's config.yaml"
            )


def _metric_rows(path: Path) -> tuple[str, list[tuple[int, int, str]]]:
    """Header line and ``(update, seed, line)`` of every complete data row of a metrics CSV."""
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    if not lines:
        return "", []
    header, rows = lines[0], []
    for line in lines[1:]:
        fields = line.split(",", 3)
        if not line.endswith("\n") or len(fields) < 4 or not (fields[0].isdigit() and fields[2].isdigit()):
            break  # a row cut short by a crash: it and anything after it are dropped
        rows.append((int(fields[0]), int(fields[2]), line))
    return header, rows


def truncate_metrics(path: str | Path, update: int) -> None:
    """Atomically rewrite a metrics CSV keeping its header and the rows of updates ``<= update``."""
    header, rows = _metric_rows(Path(path))
    write_text_atomic(path, header + "".join(line for u, _, line in rows if u <= update))


def _check_metrics(path: Path, update: int, num_seeds: int) -> None:
    if update == 0:
        return
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the checkpoint of update {update} needs its rows")
    _, rows = _metric_rows(path)
    have = {(u, s) for u, s, _ in rows if u <= update}
    if len(have) != update * num_seeds:
        last = max((u for u, _ in have), default=0)
        raise CheckpointError(
            f"{path} holds rows up to update {last} but the checkpoint is at update {update}; "
            "the metrics before it are lost, so the run cannot be resumed"
        )


def never_checkpointed(run_dir: str | Path) -> bool:
    """True when ``run_dir`` has no checkpoint directory (complete or not; the temporary directory of a
    write cut short does not count): a run stopped before its first checkpoint was complete, which a resume
    starts again from update 0."""
    return not saved_updates(run_dir)


def prepare_resume(
    run_dir: str | Path, template_fn: Callable[[Config], Any]
) -> tuple[Config, Restored, list[str]]:
    """Validate ``run_dir`` for resuming and load its newest complete checkpoint; writes nothing.

    Args:
        run_dir: the run directory (holds config.yaml, metrics.csv, checkpoints/).
        template_fn: config -> pytree of ``jax.ShapeDtypeStruct`` of the seed-stacked train state.

    Returns:
        ``(config, restored, notes)``; ``notes`` tells of each newer checkpoint that was incomplete or
        corrupt and skipped.

    Raises:
        ConfigError: ``run_dir`` is not a directory or its config.yaml is missing or invalid.
        CheckpointError: no complete checkpoint, a checkpoint of another config (CheckpointMismatch), or
            metrics.csv lacks rows the checkpoint has passed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise config_lib.ConfigError(f"--resume {str(run_dir)!r} is not a directory")
    config_path = run_dir / "config.yaml"
    config = config_lib.load(config_path)
    path, manifest, skipped = latest(run_dir)
    check_versions(path, manifest)
    check_config(path, config_path.read_text())
    state = load_state(path, template_fn(config))
    _check_metrics(run_dir / "metrics.csv", manifest["update"], config.num_seeds)
    notes = [f"skipping checkpoint {reason}; resuming from {path}" for reason in skipped]
    return config, Restored(path, manifest["update"], state, float(manifest["train_s"])), notes
