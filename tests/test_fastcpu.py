"""The XLA:CPU fast path: compile options, parallel compilation, the executable cache, host keys; and the light
gymnax import."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from trpojax import config as config_lib
from trpojax.envs import make_env
from trpojax.envs.gymnax import CLASSIC_CONTROL
from trpojax.fastcpu.cache import ExecutableCache
from trpojax.fastcpu.compile import compile_programs
from trpojax.fastcpu.keys import run_keys, threefry_fold_in
from trpojax.fastcpu.options import CPU_FAST_OPTIONS, CPU_OPTIMIZED_OPTIONS, compiler_options
from trpojax.trainer import EVAL_KEY_SALT, chunk_schedule, eval_keys, make_trainer, seed_keys

TINY = {
    "algo": "trpo", "env": "CartPole-v1", "num_seeds": 2, "num_envs": 4, "num_steps": 32,
    "total_env_steps": 4 * 32 * 4, "eval_episodes": 2, "num_chunks": 2,
}


def _programs(config, cache=None):
    trainer = make_trainer(config)
    keys = seed_keys(config)
    lengths = chunk_schedule(config)
    return trainer, keys, lengths, compile_programs(trainer, config, keys, eval_keys(config), lengths, cache)


def _train(config, programs, keys, lengths):
    states = programs.init(keys, config)
    rows = []
    for length in lengths:
        states, metrics = programs.chunks[length](states, config)
        rows.append(np.asarray(metrics["episode_return_mean"]))
    returns = np.asarray(programs.evaluate(states, eval_keys(config)))
    return np.concatenate(rows, axis=1), returns


@pytest.fixture
def without_jax_cache():
    """Compile without JAX's persistent cache, whatever an earlier test in this worker process turned on (an
    in-process CLI run enables it): a program JAX loads from it is, by design, not stored in the executable
    cache, which would change the counts these tests check."""
    from jax._src import compilation_cache

    saved = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_enable_compilation_cache", saved)
    compilation_cache.reset_cache()


def _from_cache(programs):
    return programs.cached + int(programs.evaluate.from_cache)


def test_compiler_options_on_cpu():
    assert jax.default_backend() == "cpu"
    short = config_lib.from_dict(TINY)
    wide = config_lib.from_dict({**TINY, "num_seeds": 8, "total_env_steps": 100_000})
    assert compiler_options(short) == CPU_FAST_OPTIONS
    assert compiler_options(wide) == CPU_OPTIMIZED_OPTIONS
    assert compiler_options(dataclasses.replace(wide, compile_mode="fast")) == CPU_FAST_OPTIONS
    assert compiler_options(dataclasses.replace(short, compile_mode="optimized")) == CPU_OPTIMIZED_OPTIONS
    assert compiler_options(short, one_shot=True)["xla_backend_optimization_level"] == 0


# Programs per run: init, evaluate and one chunk program, or the four stages of a split update.
PROGRAM_COUNT = {"scan": 3, "split": 6}


@pytest.mark.usefixtures("without_jax_cache")
@pytest.mark.parametrize("execution", ["scan", "split"])
def test_executable_cache_round_trip_runs_the_same_programs(tmp_path, execution):
    config = config_lib.from_dict({**TINY, "execution": execution})
    count = PROGRAM_COUNT[execution]
    cache = ExecutableCache(tmp_path)
    _, keys, lengths, first = _programs(config, cache)
    returns_a, eval_a = _train(config, first, keys, lengths)
    assert _from_cache(first) == 0 and len(list(tmp_path.glob("*.pkl"))) == count
    _, _, _, second = _programs(config, cache)
    returns_b, eval_b = _train(config, second, keys, lengths)
    assert _from_cache(second) == count
    assert second.metric_names == first.metric_names
    np.testing.assert_array_equal(returns_a, returns_b)
    np.testing.assert_array_equal(eval_a, eval_b)


def test_executable_cache_key_follows_static_fields_only(tmp_path):
    cache = ExecutableCache(tmp_path)
    base = config_lib.from_dict(TINY)
    options = compiler_options(base)
    key = cache.key(base, "chunk-2", options)
    assert cache.key(config_lib.from_dict({**TINY, "trpo": {"max_kl": 0.05}}), "chunk-2", options) == key
    assert cache.key(config_lib.from_dict({**TINY, "num_envs": 8}), "chunk-2", options) != key
    assert cache.key(base, "chunk-3", options) != key
    assert cache.key(base, "chunk-2", compiler_options(base, one_shot=True)) != key


@pytest.mark.usefixtures("without_jax_cache")
@pytest.mark.parametrize("execution", ["split"])  # entries are read alike whatever the program (scan: above)
def test_corrupt_entries_are_recompiled(tmp_path, execution):
    config = config_lib.from_dict({**TINY, "execution": execution})
    cache = ExecutableCache(tmp_path)
    _, keys, lengths, first = _programs(config, cache)
    expected = _train(config, first, keys, lengths)[0]
    for entry in tmp_path.glob("*.pkl"):
        entry.write_bytes(entry.read_bytes()[:100])
    _, _, _, again = _programs(config, cache)
    np.testing.assert_array_equal(_train(config, again, keys, lengths)[0], expected)
    assert _from_cache(again) == 0
    _, _, _, third = _programs(config, cache)  # the recompiled entries were written back whole
    _train(config, third, keys, lengths)
    assert _from_cache(third) == PROGRAM_COUNT[execution]


def test_executables_loaded_from_jax_cache_are_not_stored(tmp_path):
    """JAX's persistent cache hit yields an executable that re-serialises without its kernels; such runs
    must not write the executable cache."""
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(json.dumps(TINY))
    script = textwrap.dedent(
        """
        import sys
        from trpojax.train import main
        sys.exit(main(["--config", sys.argv[1], "--out", sys.argv[2], "--quiet"]))
        """
    )

    def run(out, cache_dir):
        env = {
            **os.environ,
            "TRPOJAX_CACHE_DIR": str(cache_dir),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # JAX caches even these small programs
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
        proc = subprocess.run([sys.executable, "-c", script, str(config_path), str(out)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads((out / "summary.json").read_text())

    cache_dir = tmp_path / "cache"
    first = run(tmp_path / "a", cache_dir)
    executables = cache_dir / "trpojax-executables"
    assert first["programs_from_cache"] == 0
    assert len(list(executables.glob("*.pkl"))) == PROGRAM_COUNT["split"]  # execution "auto" on CPU
    for entry in executables.glob("*.pkl"):
        entry.unlink()
    second = run(tmp_path / "b", cache_dir)  # every program comes from JAX's own cache now
    assert not list(executables.glob("*.pkl"))
    assert second["eval_return_mean"] == first["eval_return_mean"]


def test_cli_compiles_only_its_programs_and_a_warm_run_nothing(tmp_path):
    """A cold run compiles the run's own programs and no stray eager ones (each costs a cold start tens of
    ms before the real compilation can start); a warm run loads them all and compiles nothing."""
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(json.dumps(TINY))

    def compiled(out):
        env = {**os.environ, "TRPOJAX_CACHE_DIR": str(tmp_path / "cache"), "JAX_LOG_COMPILES": "1"}
        proc = subprocess.run([sys.executable, "-m", "trpojax.train", "--config", str(config_path), "--out",
                               str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return sorted(line.split("jit(")[1].split(")")[0].rsplit("_", 1)[0]
                      for line in proc.stderr.splitlines() if line.startswith("Compiling jit("))

    stages = ["trpojax_collect", "trpojax_critic", "trpojax_policy", "trpojax_prepare"]  # execution auto: split
    assert compiled(tmp_path / "cold") == sorted(["trpojax_init", "trpojax_evaluate", *stages])
    assert compiled(tmp_path / "warm") == []


@pytest.mark.parametrize("name", sorted(CLASSIC_CONTROL))
def test_light_classic_control_envs_match_gymnax_make(name):
    import gymnax

    spec = make_env(name)
    env, params = gymnax.make(name)
    assert type(spec.env) is type(env)
    assert jax.tree.structure(params) == jax.tree.structure(spec.params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(spec.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert env.action_space(params).__class__ is spec.env.action_space(spec.params).__class__


def test_classic_control_import_skips_the_rest_of_gymnax():
    code = textwrap.dedent(
        """
        import sys
        from trpojax import config
        cfg = config.from_dict({"algo": "trpo", "env": "Pendulum-v1"})
        from trpojax.envs import make_env
        spec = make_env("Pendulum-v1")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("seaborn", "scipy", "matplotlib")
                       or m.startswith("gymnax.environments.misc"))
        import gymnax  # the deferred package completes itself on use
        env, params = gymnax.make("Pendulum-v1")
        from gymnax.environments import minatar
        print(heavy, type(env) is type(spec.env), "Catch-bsuite" in gymnax.registered_envs, bool(minatar))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "True", "True", "True"]


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31 - 1])
def test_host_seed_keys_match_jax_random(seed):
    config = config_lib.from_dict({**TINY, "seed": seed, "num_seeds": 5})
    base = jax.random.PRNGKey(seed)
    expected = np.stack([np.asarray(jax.random.fold_in(base, i)) for i in range(5)])
    host_keys, host_eval_keys = run_keys(config)
    np.testing.assert_array_equal(np.asarray(host_keys), expected)
    np.testing.assert_array_equal(np.asarray(seed_keys(config)), expected)
    salted = np.stack([np.asarray(jax.random.fold_in(k, EVAL_KEY_SALT)) for k in expected])
    np.testing.assert_array_equal(np.asarray(host_eval_keys), salted)
    np.testing.assert_array_equal(np.asarray(eval_keys(config)), salted)
    top = np.asarray(jax.random.fold_in(base, 2**32 - 1))
    np.testing.assert_array_equal(threefry_fold_in(np.asarray(base), 2**32 - 1), top)


def test_wait_raises_a_failed_computation_instead_of_hanging(monkeypatch):
    """The run loop waits on a helper thread; an error there must reach the caller (it once hung)."""
    from trpojax.train import loop

    def fail(tree):
        raise RuntimeError("device error")

    monkeypatch.setattr(loop.jax, "block_until_ready", fail)
    with pytest.raises(RuntimeError, match="device error"):
        loop._wait(np.zeros(3))


def test_pending_program_reraises_its_compile_error():
    from trpojax.fastcpu.compile import Pending

    def broken():
        raise ValueError("cannot compile")

    pending = Pending(broken)
    with pytest.raises(ValueError, match="cannot compile"):
        pending(1, 2)
