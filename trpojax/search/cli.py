"""The command line of ``python -m trpojax.search`` (and ``trpojax-search``).

Usage::

    python -m trpojax.search --config configs/search/trpo_pendulum.yaml [--out DIR] [--storage URL]
                             [--trials N] [--quiet]

Runs the search generation by generation until the study has N finished trials: each generation asks the
sampler for ``batch_size`` trials, runs them as vmapped programs (:mod:`.batch`) and tells the study their
objective values, then rewrites DIR's ``trials.csv``, ``best.yaml``, ``history.png`` and ``importance.png``
(:mod:`.report`). The study is in ``--storage`` (default ``sqlite:///DIR/study.db``). Running the same command
again continues the study: finished trials are kept, and trials a killed worker left running are asked again
(:mod:`.study`); every host running the command against one RDB URL is one more worker. Bad input exits 2 with
one line before anything is written; SIGINT, SIGTERM and SIGUSR1 stop at the next chunk boundary (the
generation's trials are failed and asked again next time) with 128 + the signal number. See docs/search.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import yaml

from trpojax.config import ConfigError
from trpojax.search import batch, report, study
from trpojax.search.spec import Search, load_search, objective_value
from trpojax.sweep.program import make_mesh, use_every_core
from trpojax.train import enable_compilation_cache, outputs, stop_on_signals

SEARCH_FILE = "search.yaml"
# Settings that do not change what a trial is: a continued search may change them.
HOST_SETTINGS = ("batch_size", "memory_limit_gb", "heartbeat_s")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m trpojax.search",
        description="Optuna hyperparameter search whose trials run as vmapped, sharded programs.",
    )
    parser.add_argument("--config", required=True, help="search file, e.g. configs/search/trpo_pendulum.yaml")
    parser.add_argument("--out", help="output directory (default runs/search_<name>; re-running continues it)")
    parser.add_argument("--storage", help="Optuna RDB storage URL (default sqlite:///DIR/study.db)")
    parser.add_argument("--trials", type=int, help="the study's target of finished trials (default: the file's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def check_search_dir(out_dir: Path, search: Search) -> bool:
    """Whether ``out_dir`` already holds this search (True) or is new or empty (False).

    Raises:
        ConfigError: ``out_dir`` is a file, holds something else, or holds a different search.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} is a file, not a directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return False
    saved_path = out_dir / SEARCH_FILE
    if not saved_path.is_file():
        raise ConfigError(f"--out {str(out_dir)!r} is not empty and holds no {SEARCH_FILE}: not a search directory")
    saved = yaml.safe_load(saved_path.read_text())
    wanted = yaml.safe_load(yaml.safe_dump(search.resolved, sort_keys=False))
    if isinstance(saved, dict):
        saved, wanted = ({k: v for k, v in d.items() if k not in HOST_SETTINGS} for d in (saved, wanted))
    if saved != wanted:
        key = next((k for k in wanted if saved.get(k) != wanted.get(k)), "the search") if isinstance(saved, dict) \
            else "the search"
        raise ConfigError(f"{str(out_dir)!r} holds another search ({key} differs from {str(search.file)!r}); "
                          "restore the file or use a new --out")
    return True


def _tell(the_study: Any, search: Search, trials: list[Any], returns: Any) -> None:
    """Record each trial's per-seed returns and tell the study its objective (a non-finite one fails it)."""
    state = study.import_optuna().trial.TrialState
    for trial, trial_returns in zip(trials, returns, strict=True):
        trial.set_user_attr(report.RETURNS_ATTR, [float(r) for r in trial_returns])
        value = objective_value(search, trial_returns)
        if math.isfinite(value):
            the_study.tell(trial, value)
        else:
            trial.set_user_attr(study.FAILURE_ATTR, "non-finite eval return")
            the_study.tell(trial, state=state.FAIL)


def run_search(search: Search, out_dir: Path, storage: Any, target: int, quiet: bool) -> int:
    """Generations until the study has ``target`` finished trials; returns the exit code."""
    opt = study.import_optuna()
    the_study = study.open_study(search, storage)
    recovered = study.recover(the_study, search.heartbeat_s)
    if recovered:
        print(f"trials {recovered} were left running by a stopped worker: failed, and asked again", file=sys.stderr)
    mesh = make_mesh(jax.local_devices())  # each host is its own Optuna worker
    cache: dict[Any, Any] = {}
    written = False  # the outputs, after this process's last generation
    with stop_on_signals() as stop:
        while True:
            finished, running = study.counts(the_study)
            count = min(search.batch_size, target - finished - running)
            if count <= 0 or stop():
                break
            trials = study.ask(the_study, storage, search, count)
            values, configs = [], []
            for trial in trials:
                values.append(report.trial_values(search, trial))
                try:
                    configs.append(search.trial_config(values[-1]))
                except ConfigError as err:  # a combination of valid values that makes an invalid config
                    trial.set_user_attr(study.FAILURE_ATTR, f"invalid config: {err}")
                    the_study.tell(trial, state=opt.trial.TrialState.FAIL)
                    configs.append(None)
            live = [i for i, c in enumerate(configs) if c is not None]
            first, last = trials[0].number, trials[-1].number
            if live:
                t0 = time.perf_counter()
                try:
                    with study.Heartbeat(storage, [trials[i] for i in live], search.heartbeat_s):
                        result = batch.run_generation(
                            search, [configs[i] for i in live], [values[i] for i in live], mesh, cache,
                            progress=not quiet, stop_requested=stop, desc=f"trials {first}-{last}",
                        )
                except ConfigError:  # too large for device memory: not the trials' fault, they are asked again
                    for i in live:
                        study.fail_and_retry(the_study, trials[i])
                    raise
                except batch.Interrupted:
                    for i in live:
                        study.fail_and_retry(the_study, trials[i])
                    report.write_outputs(out_dir, search, the_study)
                    print(f"stopped by {stop.name} during trials {first}-{last} (asked again when the search "
                          f"continues); continue with the same command", file=sys.stderr)
                    return stop.exit_code
                _tell(the_study, search, [trials[i] for i in live], result.returns)
                seconds = time.perf_counter() - t0
                rate = result.env_steps / max(result.train_s, 1e-9)
                note = (f"{len(live)} trials in {result.programs} program(s), {seconds:.1f} s "
                        f"(compile {result.compile_s:.1f} s), {rate:,.0f} env steps/s")
            else:
                note = "no valid trial"
            best, written = report.write_outputs(out_dir, search, the_study), True
            finished, _ = study.counts(the_study)
            best_note = f"best trial {best.number}: {best.value:.2f}" if best is not None else "no trial complete"
            print(f"trials {first}-{last}: {note}; {finished}/{target} finished; {best_note}", flush=True)
        if stop():
            print(f"stopped by {stop.name} between generations; continue with the same command", file=sys.stderr)
            return stop.exit_code
    if not written:  # nothing was run here (a finished study): write the outputs once
        best = report.write_outputs(out_dir, search, the_study)
    if best is None:
        print(f"search {search.name}: no trial completed -> {out_dir}")
    else:
        print(f"search {search.name}: best trial {best.number}, {search.objective} {best.value:.2f} "
              f"({', '.join(f'{k}={v}' for k, v in report.trial_values(search, best).items())}) -> "
              f"{out_dir / 'best.yaml'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0, 2 on bad input (one line on stderr, nothing written), 128 + the signal
    number after a stop signal, 1 when a write fails."""
    args = parse_args(argv)
    use_every_core()
    try:
        search = load_search(args.config)
        if args.trials is not None and args.trials < 1:
            raise ConfigError(f"--trials: must be >= 1, got {args.trials}")
        out_dir = Path(args.out or Path("runs") / f"search_{search.name}")
        check_search_dir(out_dir, search)
        url = args.storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
        created = args.storage is None and not out_dir.exists()
        if created:
            out_dir.mkdir(parents=True)  # SQLite creates the file, not its directory
        try:
            storage = study.open_storage(url, search.heartbeat_s)
        except ConfigError:
            if created:
                out_dir.rmdir()
            raise
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs.write_text_atomic(out_dir / SEARCH_FILE, yaml.safe_dump(search.resolved, sort_keys=False))
        enable_compilation_cache(search.resolved["base_config"]["compilation_cache"])
        return run_search(search, out_dir, storage, args.trials or search.trials, args.quiet)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write the search's files: {err}; the study in the storage is kept", file=sys.stderr)
        return 1


def entry_point() -> None:
    """``trpojax-search``: :func:`main` as the process's exit code."""
    sys.exit(main())
