"""The command line of ``python -m trpojax.train`` (and ``trpojax-train``): validate, run, report.

Bad input (an unknown key, a wrong type, an unknown environment, a missing or corrupt checkpoint, an
unusable ``--out``, a checkpoint of another config or code version, a tracker of ``loggers:`` that cannot
start) exits with code 2 and one line on stderr, before anything is written. SIGINT (Ctrl-C), SIGTERM and
SIGUSR1 stop the run at the next chunk boundary after a checkpoint, exiting with 128 + the signal number
(130, 143, 138 on Linux); see docs/durability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax

from trpojax import config as config_lib
from trpojax import fastcpu
from trpojax.config import Config, ConfigError
from trpojax.train import checkpoint, outputs, trackers
from trpojax.train.loop import RunInterrupted, ValueDiverged, run
from trpojax.trainer import PlainPath, state_template


def default_out_dir(config: Config) -> Path:
    """``runs/<algo>_<env>_<YYYYmmdd-HHMMSS>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.algo}_{config.env.replace(':', '-')}_{stamp}"


def check_out_dir(out_dir: Path, hint: str = "") -> None:
    """Raise ConfigError unless ``out_dir`` is new or an empty directory whose nearest existing parent is
    writable; ``hint`` is appended to the not-empty message."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"--out {str(out_dir)!r} is not empty; choose a new directory{hint}")
    probe = out_dir if out_dir.exists() else next((p for p in out_dir.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"--out {str(out_dir)!r} is not writable")


def default_cache_dir() -> Path:
    """``$TRPOJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/trpojax/jax``, else ``~/.cache/trpojax/jax``."""
    if os.environ.get("TRPOJAX_CACHE_DIR"):
        return Path(os.environ["TRPOJAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "trpojax" / "jax"


def enable_compilation_cache(enabled: bool) -> Path | None:
    """Turn on JAX's persistent compilation cache in :func:`default_cache_dir` when ``enabled``.

    JAX's own thresholds apply (programs that took at least a second to compile are cached): on CPU the
    run's own programs, small ones included, are in the fast path's executable cache
    (:mod:`trpojax.fastcpu.cache`), and writing every small eager op's program too cost cold runs about 0.15 s.
    """
    if not enabled:
        return None
    cache = default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    return cache


def program_path(config: Config, cache_dir: Path | None) -> fastcpu.FastPath | PlainPath:
    """The fast path on CPU (:func:`trpojax.fastcpu.applies`), else the plain one."""
    if fastcpu.applies(config):
        return fastcpu.FastPath(cache_dir, while_compiling=outputs.pyplot)
    return PlainPath()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """The stop predicate of :func:`stop_on_signals`: true once a stop signal arrived.

    Attributes:
        signum: the first stop signal received, or None.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name (``SIGTERM``), or an empty string before any."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        """The conventional exit code of a process ended by the signal: 128 + its number (143 for SIGTERM)."""
        return 128 + (self.signum or 0)


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[int] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """While active, a first SIGINT, SIGTERM or SIGUSR1 asks for a stop (the yielded predicate turns true);
    a second one of any of them kills the process at once.

    The first signal only records itself, which :func:`trpojax.train.run` (and the sweep) poll at chunk
    boundaries, and restores the default action of every signal in ``signals``, so a second one
    terminates the process at once (the last complete checkpoint stays usable). Main thread only.
    """
    request = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        request.signum = signum
        for sig in signals:
            signal.signal(sig, signal.SIG_DFL)
        name = signal.Signals(signum).name
        message = f"\n{name}: saving a checkpoint at the next chunk boundary (a second signal quits at once)\n"
        os.write(sys.stderr.fileno(), message.encode())

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield request
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m trpojax.train", description="Train a policy on a gymnax environment."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="YAML run config, e.g. configs/trpo_cartpole.yaml")
    source.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its last complete checkpoint"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set trpo.max_kl=0.02 (repeatable)",
    )
    parser.add_argument("--out", help="output directory (default runs/<algo>_<env>_<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def finished(run_dir: Path, config: Config, restored: checkpoint.Restored) -> bool:
    """True when the run in ``run_dir`` is complete: its newest checkpoint is of the last update and
    summary.json exists."""
    return restored.update == config.num_updates and (run_dir / "summary.json").is_file()


def _prepare(args: argparse.Namespace) -> tuple[Config, Path, checkpoint.Restored | None]:
    """Validate the CLI input (raising ConfigError / CheckpointError) without writing anything, except that
    a ``--resume`` of a run stopped before its first checkpoint clears its leftovers to start again."""
    if args.resume is None:
        config = config_lib.load(args.config, args.overrides)
        out_dir = Path(args.out) if args.out else default_out_dir(config)
        check_out_dir(out_dir, " (or --resume it)")
        return config, out_dir, None
    if args.overrides or args.out:
        raise ConfigError("--resume DIR continues DIR with its own config.yaml; --set and --out do not apply")
    run_dir = Path(args.resume)
    if run_dir.is_dir() and (run_dir / "config.yaml").is_file() and checkpoint.never_checkpointed(run_dir):
        config = config_lib.load(run_dir / "config.yaml")  # stopped before its first checkpoint: start again
        print(f"note: {run_dir} has no checkpoint; starting it again from update 0", file=sys.stderr)
        shutil.rmtree(checkpoint.checkpoints_dir(run_dir), ignore_errors=True)
        (run_dir / "metrics.csv").unlink(missing_ok=True)
        return config, run_dir, None
    config, restored, notes = checkpoint.prepare_resume(args.resume, state_template)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return config, Path(args.resume), restored


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code.

    0 on success, and for ``--resume`` of a finished run (nothing is changed); 2 on bad input, including a
    tracker of ``loggers:`` that cannot start (one line on stderr, nothing written); 128 + the signal number
    when stopped by SIGINT (130), SIGTERM (143) or SIGUSR1 (138) after checkpointing; 1 when the value
    function diverged (after checkpointing the last finite state) or a write failed (a full disk: one line,
    the last complete checkpoint stays usable).
    """
    start = time.time()
    args = parse_args(argv)
    try:
        config, out_dir, restored = _prepare(args)
    except (ConfigError, checkpoint.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if restored is not None and finished(out_dir, config, restored):
        print(f"run {out_dir} is already finished (update {restored.update} of {config.num_updates}, "
              "summary.json written); nothing to do")
        return 0
    path = program_path(config, enable_compilation_cache(config.compilation_cache))
    try:
        with stop_on_signals() as stop_requested:
            result = run(
                config, out_dir, progress=not args.quiet, start_time=start, resume=restored,
                stop_requested=stop_requested, path=path,
            )
    except RunInterrupted as err:
        print(
            f"stopped by {stop_requested.name} after update {err.update} of {config.num_updates}; "
            f"checkpoint {err.path}; continue with: python -m trpojax.train --resume {out_dir}",
            file=sys.stderr,
        )
        return stop_requested.exit_code
    except trackers.TrackerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write the run's files: {err}; the last complete checkpoint in {out_dir} "
              "stays usable with --resume", file=sys.stderr)
        return 1
    except ValueDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    s = result.summary
    print(
        f"{s['algo']} {s['env']}: eval return {s['eval_return_mean']:.1f} +- {s['eval_return_std']:.1f} "
        f"over {s['num_seeds']} seeds after {s['env_steps']} env steps; "
        f"{s['env_steps_per_s']:,.0f} env steps/s, compile {s['compile_s']:.1f} s, "
        f"wall {s['wall_clock_s']:.1f} s -> {result.out_dir}"
    )
    return 0


def entry_point() -> None:
    """``trpojax-train``: :func:`main`, then exit without the interpreter's teardown of JAX and XLA
    (0.2-0.4 s; every output is written and closed by then)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
