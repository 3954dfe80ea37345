"""The Optuna side of a search: storage, study, samplers, heartbeats and retrying trials of dead workers.

Every worker (one ``python -m trpojax.search`` process, on one host or many) asks the study for trials, runs
them and tells it the results; the study lives in an RDB storage (SQLite by default, any SQLAlchemy URL such as
PostgreSQL or MySQL for many hosts). A trial being run is ``RUNNING`` in the storage, records a heartbeat every
``heartbeat_s`` seconds and carries its worker's host and process id. A trial left ``RUNNING`` by a worker that
died (``kill -9``, a lost node) is marked failed and asked again with the same parameters: at once when the
worker was on this host and its process is gone, otherwise when its heartbeat is older than twice
``heartbeat_s`` (Optuna's ``fail_stale_trials``).
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import threading
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

from trpojax.config import ConfigError
from trpojax.search.spec import Search

HOST_ATTR, PID_ATTR = "host", "pid"
RETRY_ATTR = "retry_of"  # user attr of a trial asked again: the number of the trial it repeats
FAILURE_ATTR = "failure"  # user attr of a trial failed by its result (counted as finished, not retried)
MAX_RETRIES = 3


def import_optuna() -> Any:
    """The ``optuna`` module.

    Raises:
        ConfigError: Optuna is not installed (the ``search`` extra).
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("searches need Optuna: pip install -e \".[search]\"") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats and fail_stale_trials are marked experimental, and said to be meant for Study.optimize; this
    # module drives them itself for batched ask / tell.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module="optuna")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=__name__)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning)
    return optuna


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str, heartbeat_s: int) -> Any:
    """An ``optuna.storages.RDBStorage`` at ``url`` with heartbeats every ``heartbeat_s`` seconds.

    Raises:
        ConfigError: the URL is malformed, its driver is missing or the database cannot be reached.
    """
    optuna = import_optuna()
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s, heartbeat_stale_trial_callback=retry,
            engine_kwargs={"pool_pre_ping": True},
        )
    except Exception as err:  # noqa: BLE001 - SQLAlchemy and drivers raise many kinds; all mean "unusable"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--storage {masked(url)!r} cannot be opened: {reason}") from None


def make_sampler(search: Search, seed: int) -> Any:
    """The search's sampler (TPE with constant liar for batches, CMA-ES or random) seeded with ``seed``."""
    optuna = import_optuna()
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True,
                                          n_startup_trials=max(10, search.batch_size))
    if search.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, popsize=max(search.batch_size, 4),
                                            n_startup_trials=1)
    return optuna.samplers.RandomSampler(seed=seed)


def open_study(search: Search, storage: Any) -> Any:
    """Create the search's study in ``storage`` (maximising the objective) or load it to continue.

    The first worker of a study samples with the search's own seed, so a search on one host is reproducible;
    a worker joining (or continuing) a study with trials mixes in the number of trials, its host and its
    process id, so concurrent workers do not ask the same parameters.
    """
    optuna = import_optuna()
    existing = {s.study_name: s for s in storage.get_all_studies()}
    if search.name in existing and existing[search.name].directions != [optuna.study.StudyDirection.MAXIMIZE]:
        raise ConfigError(f"study {search.name!r} in the storage does not maximise one objective")
    study = optuna.create_study(
        study_name=search.name, storage=storage, sampler=make_sampler(search, search.sampler_seed),
        direction="maximize", load_if_exists=True,
    )
    n = len(study.get_trials(deepcopy=False))
    if n:
        study.sampler = make_sampler(
            search, zlib.crc32(f"{search.sampler_seed}:{n}:{socket.gethostname()}:{os.getpid()}".encode())
        )
    return study


def retry(study: Any, trial: Any) -> None:
    """Ask a failed trial again: enqueue its parameters (at most :data:`MAX_RETRIES` times per original)."""
    original = trial.user_attrs.get(RETRY_ATTR, trial.number)
    retries = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get(RETRY_ATTR) == original)
    if retries < MAX_RETRIES and trial.params:
        study.enqueue_trial(dict(trial.params), user_attrs={RETRY_ATTR: original}, skip_if_exists=False)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover(study: Any, heartbeat_s: int) -> list[int]:
    """Fail and ask again the trials whose workers died; returns the numbers of the trials failed.

    A ``RUNNING`` trial of this host whose process no longer exists is failed at once; trials of other hosts
    when their heartbeat is older than ``2 * heartbeat_s`` (Optuna's ``fail_stale_trials``, which calls
    :func:`retry`), and a trial never tagged with its worker once it is that old.
    """
    optuna = import_optuna()
    running = optuna.trial.TrialState.RUNNING
    host, failed = socket.gethostname(), []
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(running,)):
        pid = trial.user_attrs.get(PID_ATTR)
        dead_here = trial.user_attrs.get(HOST_ATTR) == host and isinstance(pid, int) and pid != os.getpid() \
            and _process_gone(pid)
        # A worker tags its trial within milliseconds of asking it; an untagged one is from a worker that died
        # in between (it has no heartbeat either, so Optuna would never fail it).
        untagged = pid is None and (now - trial.datetime_start).total_seconds() > 2 * heartbeat_s
        if dead_here or untagged:
            fail_and_retry(study, trial)
            failed.append(trial.number)
    before = {t.number for t in study.get_trials(deepcopy=False, states=(running,))}
    optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(running,))}
    return sorted(failed + list(before - after))


def fail_and_retry(study: Any, trial: Any) -> None:
    """Mark a running trial (a ``Trial`` or ``FrozenTrial``) failed and enqueue its parameters again."""
    optuna = import_optuna()
    study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    retry(study, study.trials[trial.number])


def counts(study: Any) -> tuple[int, int]:
    """``(finished, running)``: trials complete or failed by their result, and trials being run now."""
    optuna = import_optuna()
    state = optuna.trial.TrialState
    finished = running = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == state.COMPLETE or (trial.state == state.FAIL and FAILURE_ATTR in trial.user_attrs):
            finished += 1
        elif trial.state == state.RUNNING:
            running += 1
    return finished, running


def ask(study: Any, storage: Any, search: Search, count: int) -> list[Any]:
    """Ask ``count`` trials (enqueued retries first), each tagged with this worker's host and process id, with a
    first heartbeat in ``storage``."""
    distributions = {p.path: p.distribution() for p in search.params}
    trials = []
    for _ in range(count):
        trial = study.ask(distributions)
        trial.set_user_attr(HOST_ATTR, socket.gethostname())
        trial.set_user_attr(PID_ATTR, os.getpid())
        storage.record_heartbeat(trial._trial_id)
        trials.append(trial)
    return trials


class Heartbeat:
    """While open, records a heartbeat in ``storage`` for each of ``trials`` every ``interval_s`` seconds on a
    thread (a worker busy in a long XLA program still shows it is alive)."""

    def __init__(self, storage: Any, trials: Sequence[Any], interval_s: float):
        self.storage, self.trials, self.interval_s = storage, list(trials), interval_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="trpojax-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval_s):
            for trial in self.trials:
                self.storage.record_heartbeat(trial._trial_id)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
