"""Compile a run's programs in parallel, and load them from the executable cache when warm.

A run needs three kinds of XLA programs (:class:`trpojax.trainer.Trainer`): ``init``, the training programs
(one ``run_chunk`` per distinct chunk length, or the four stages of a split update), and the final
``evaluate``. :func:`compile_programs` traces them one after the other on the calling thread (tracing holds
the GIL) and hands each to a worker thread to compile as soon as it is traced, the longest compilation
first, so XLA compiles while Python traces the next program. Each program is named after its
:class:`~trpojax.fastcpu.cache.ExecutableCache` key, so that JAX's persistent cache (whose key starts with
the program's name) misses exactly when that one does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from functools import cache, partial
from typing import Any

import jax

from trpojax.algos.actor_critic import EPISODE_METRICS
from trpojax.config import Config
from trpojax.fastcpu.cache import ExecutableCache
from trpojax.fastcpu.options import compiler_options, use_split
from trpojax.fastcpu.split import SplitRunner, split_programs
from trpojax.trainer import Programs, Trainer


class Pending:
    """A program still being compiled on a background thread; calling it waits, then runs it.

    Attributes:
        from_cache: whether it was loaded from the executable cache (known once it is ready).
    """

    def __init__(self, job: Callable[[], tuple[Any, bool]]):
        self._future: Future = Future()
        self.from_cache = False

        def run() -> None:
            try:
                self._future.set_result(job())
            except BaseException as err:  # noqa: BLE001 - re-raised by __call__
                self._future.set_exception(err)

        threading.Thread(target=run, name="trpojax-compile-evaluate", daemon=True).start()

    def __call__(self, *args: Any) -> Any:
        compiled, self.from_cache = self._future.result()
        return compiled(*args)


def compile_programs(
    trainer: Trainer,
    config: Config,
    keys: jax.Array,
    keys_eval: jax.Array,
    lengths: Sequence[int],
    executable_cache: ExecutableCache | None = None,
    while_compiling: Callable[[], Any] | None = None,
) -> Programs:
    """Compile (or load) ``init``, the training programs (a chunk program per distinct length in ``lengths``,
    or the split stages when :func:`trpojax.fastcpu.options.use_split`), and ``evaluate``.

    Tracing runs on this thread, each program handed to one of two worker threads to compile as soon as it
    is lowered; deserialisation runs on the workers too. This thread stores fresh compilations in the
    executable cache as they finish, while it waits for the others. The final evaluation's program is
    traced here too, but compiled on a background thread only once the others are ready, so it overlaps
    training instead of delaying it.

    ``while_compiling``, if given, is called on this thread once every program is lowered, while the
    workers still compile, if any program had to be compiled (the CLI imports matplotlib there: beside
    training, the import would hold the GIL that the training loop needs to dispatch its programs).
    """
    t0 = time.perf_counter()

    lowered_init: list[Any] = []  # init's lowering, once done: its outputs are the train states' shapes

    @cache
    def states_like() -> Any:  # traced only when some program has to be lowered
        return lowered_init[0].out_info if lowered_init else jax.eval_shape(trainer.init, keys, config)

    def lower_init() -> Any:
        lowered_init.append(trainer.init.lower(keys, config))
        return lowered_init[0]

    def key(name: str, options: dict[str, Any] | None) -> str | None:
        return executable_cache.key(config, name, options) if executable_cache else None

    split = split_programs(trainer.learner) if use_split(config, trainer.learner.split is not None) else None
    if executable_cache is not None:
        # Name each program after its executable-cache key. JAX's persistent cache key starts with the
        # program's name, so JAX's entry and ours are created and found together: after an upgrade of
        # trpojax both miss once and both store a fresh compilation (a JAX hit is never stored, above).
        tag = executable_cache.key(config, "programs", None)[:16]
        trainer = trainer._replace(
            init=_renamed(trainer.init, f"trpojax_init_{tag}"),
            run_chunk=_renamed(trainer.run_chunk, f"trpojax_chunk_{tag}", static_argnums=2),
            evaluate=_renamed(trainer.evaluate, f"trpojax_evaluate_{tag}"),
        )
        if split is not None:
            split = type(split)(*[_renamed(f, f"trpojax_{stage}_{tag}") for stage, f in split._asdict().items()])

    repeated, one_shot = compiler_options(config), compiler_options(config, one_shot=True)
    # Each program is handed to a compile worker as soon as it is lowered, while this thread lowers the
    # next: init first (its lowering also gives the train states' shapes), then the training programs.
    if split is None:
        training: list[tuple[str, Callable[[], Any], dict[str, Any] | None]] = [
            (f"chunk-{n}", lambda n=n: trainer.run_chunk.lower(states_like(), config, n), repeated)
            for n in sorted(set(lengths))
        ]
    else:
        training = _split_jobs(split, states_like, config, repeated) if lengths else []
    jobs = [("init", lower_init, one_shot), *training]
    futures: dict[str, Future] = {}
    cached = 0
    eval_key = key("evaluate", one_shot)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="trpojax-compile") as pool:
        keys_of = {name: key(name, options) for name, _, options in jobs}
        loads = {name: pool.submit(executable_cache.load, k) for name, k in keys_of.items() if k}
        eval_load = pool.submit(executable_cache.load, eval_key) if eval_key else None
        for name, lower, options in jobs:
            hit = loads[name].result() if name in loads else None
            if hit is not None:
                cached += 1
                futures[name] = loads[name]
                continue
            lowered = lower()
            extra = _metric_names(name, lowered)
            futures[name] = pool.submit(_compile, lowered, options, extra, executable_cache, keys_of[name])
        # The evaluation is traced here, while the workers compile, rather than beside training, where
        # tracing would hold the GIL that the training loop needs to dispatch its programs.
        eval_hit = eval_load.result() if eval_load is not None else None
        eval_lowered = None if eval_hit is not None else trainer.evaluate.lower(states_like(), keys_eval)
        if while_compiling is not None and cached < len(jobs):
            while_compiling()
        # While this thread waits for the compilations still running, it stores the finished ones in the
        # executable cache; the last ones are stored once all are done, before any of them runs.
        for _ in as_completed(futures.values()):
            if executable_cache is not None:
                executable_cache.write_pending()
        results = {name: future.result() for name, future in futures.items()}
    if split is None:
        chunks = {int(name.split("-")[1]): results[name][0] for name in results if name.startswith("chunk")}
        metric_names = next((results[name][1] for name in results if name.startswith("chunk")), [])
        run_chunk = trainer.run_chunk
    else:
        metric_names = []
        if lengths:
            split = type(split)(*[results[f"split-{stage}"][0] for stage in split._fields])
            metric_names = [*EPISODE_METRICS, *results["split-policy"][1], *results["split-critic"][1]]
        run_chunk = SplitRunner(split)
        chunks = {n: partial(run_chunk, length=n) for n in set(lengths)}

    def evaluate_job() -> tuple[Any, bool]:
        if eval_hit is not None:
            return eval_hit[0], True
        compiled = _compile(eval_lowered, one_shot, None, executable_cache, eval_key)[0]
        if executable_cache is not None:  # stored now, before it runs
            executable_cache.write_pending()
        return compiled, False

    return Programs(
        init=results["init"][0],
        chunks=chunks,
        run_chunk=run_chunk,
        evaluate=Pending(evaluate_job),
        metric_names=list(metric_names),
        compile_s=time.perf_counter() - t0,
        cached=cached,
        in_flight=1 if split is not None else 2,  # a split chunk runs on the host threads until done
        close=run_chunk.close if split is not None else (lambda: None),
    )


def _split_jobs(
    split: Any, states_like: Callable[[], Any], config: Config, options: dict[str, Any] | None
) -> list[tuple[str, Callable[[], Any], dict[str, Any] | None]]:
    """Lowering jobs of the split stages (:class:`trpojax.fastcpu.split.SplitPrograms`), the policy first.

    The policy's program takes the longest to compile, and everything else is done before it when it
    starts last, so it is lowered first: the shapes of the batch it takes come from tracing ``collect`` and
    ``prepare`` abstractly (``jax.eval_shape``, whose traces their own lowering then reuses).
    """

    def agent() -> Any:
        return states_like().agent

    @cache
    def collected() -> Any:
        return jax.eval_shape(split.collect, states_like(), config)

    @cache
    def batch() -> Any:
        return jax.eval_shape(split.prepare, agent().value_params, states_like().obs_stats,
                              collected().transitions, config)

    return [
        ("split-policy", lambda: split.policy.lower(agent().policy_params, batch(), config), options),
        ("split-collect", lambda: split.collect.lower(states_like(), config), options),
        ("split-critic", lambda: split.critic.lower(agent().value_params, agent().value_opt_state, batch(),
                                                    collected().update_key, config), options),
        ("split-prepare", lambda: split.prepare.lower(agent().value_params, states_like().obs_stats,
                                                      collected().transitions, config), options),
    ]


def _metric_names(program: str, lowered: Any) -> list[str] | None:
    """The metric names a training program returns (stored with its executable), None for other programs."""
    if program.startswith("chunk") or program == "split-policy":
        return sorted(lowered.out_info[1])
    if program == "split-critic":
        return sorted(lowered.out_info[2])
    return None


def _renamed(jitted: Any, name: str, static_argnums: int | tuple[int, ...] = ()) -> Any:
    """``jitted`` (a ``jax.jit`` function) re-jitted under the function name ``name``."""
    inner = jitted.__wrapped__

    def program(*args: Any) -> Any:
        return inner(*args)

    program.__name__ = program.__qualname__ = name
    return jax.jit(program, static_argnums=static_argnums)


# An executable that JAX itself loaded from its persistent cache serialises to an incomplete blob (on CPU,
# kernels go missing: "Function ... not found" when it runs), so only fresh compilations are stored. JAX
# reports its cache hits as monitoring events, on the compiling thread.
_JAX_CACHE_HIT = "/jax/compilation_cache/cache_hits"
_thread_state = threading.local()


@cache
def _watch_jax_cache() -> bool:
    """Start noting JAX persistent-cache hits per thread; False if this JAX cannot report them."""

    def on_event(event: str, **_: Any) -> None:
        if event == _JAX_CACHE_HIT:
            _thread_state.jax_cache_hit = True

    try:
        jax.monitoring.register_event_listener(on_event)
    except Exception:
        return False
    return True


def _compile(
    lowered: Any, options: dict[str, Any] | None, extra: Any, executable_cache: ExecutableCache | None, key: str | None
) -> tuple:
    watching = executable_cache is not None and _watch_jax_cache()
    _thread_state.jax_cache_hit = False
    compiled = lowered.compile(options)
    if watching and key is not None and not _thread_state.jax_cache_hit:
        executable_cache.store_later(key, compiled, extra)
    return compiled, extra
