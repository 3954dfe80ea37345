"""Sweeps: sharded results equal single runs, statistics equal plain-NumPy references, bad input exits 2."""

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from trpojax import stats, sweep, train
from trpojax.sweep.spec import load_sweep

TINY_BASE = """\
algo: trpo
env: CartPole-v1
seed: 3
num_seeds: 1
total_env_steps: 192
num_envs: 4
num_steps: 16
eval_episodes: 2
num_chunks: 2
compilation_cache: false
trpo:
  cg_iters: 3
  critic_epochs: 1
  critic_minibatches: 2
"""


def _write(tmp_path: Path, sweep_text: str) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY_BASE)
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(sweep_text))
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sharded_sweep_matches_single_runs(tmp_path):
    """3 configs x 2 seeds on 4 forced CPU devices (padded to 8 runs) equal make_train run by run."""
    path = _write(tmp_path, """\
        base: tiny.yaml
        num_seeds: 2
        grid:
          trpo.max_kl: [0.002, 0.05]
        random:
          count: 1
          ranges:
            trpo.critic_lr: {low: 1.0e-3, high: 1.0e-2, log: true}
        """)
    grid_path = path.with_name("grid3.yaml")
    grid_path.write_text(path.read_text().replace("[0.002, 0.05]", "[0.002, 0.02, 0.05]"))
    out = tmp_path / "out"
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"}
    proc = subprocess.run(
        [sys.executable, "-m", "trpojax.sweep", "--config", str(grid_path), "--out", str(out), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "on 4 device(s)" in proc.stdout
    outputs = {"results.csv", "curves.csv", "summary.md", "curves.png", "sweep.yaml", "groups"}
    assert {p.name for p in out.iterdir()} == outputs
    assert "| 1 | - | 6 (8) |" in (out / "summary.md").read_text()  # 6 runs padded to 8 on 4 devices

    spec = load_sweep(grid_path)
    results = _read_csv(out / "results.csv")
    curves = _read_csv(out / "curves.csv")
    assert len(results) == 6 and len(curves) == 6 * 3
    assert {float(r["trpo.critic_lr"]) for r in results} == {spec.points[0][1]}

    train_fn = jax.jit(train.make_train(spec.configs[0]))  # the configs differ only in traced floats
    keys = train.seed_keys(spec.configs[0])
    trainer = train.make_trainer(spec.configs[0])
    for c, config in enumerate(spec.configs):
        for s in range(2):
            state, metrics = train_fn(keys[s], config)
            expected_curve = np.asarray(metrics["episode_return_mean"])
            got_curve = [float(r["episode_return_mean"]) for r in curves
                         if (r["config"], r["seed"]) == (str(c), str(s))]
            np.testing.assert_allclose(got_curve, expected_curve, rtol=1e-5)
            batched = jax.tree.map(lambda x: x[None], state)
            expected_eval = np.asarray(trainer.evaluate(batched, train.eval_keys(config)[s : s + 1])).mean()
            row = results[2 * c + s]
            assert (row["config"], row["seed"]) == (str(c), str(s))
            np.testing.assert_allclose(float(row["eval_return"]), expected_eval, rtol=1e-5)
            assert float(row["train_return_final"]) == pytest.approx(float(expected_curve[-1]), rel=1e-5)
            assert int(row["env_steps"]) == 192

    seed0 = [[float(r["episode_return_mean"]) for r in curves if (r["config"], r["seed"]) == (str(c), "0")]
             for c in range(3)]
    assert not np.allclose(seed0[0], seed0[2])  # max_kl 0.002 vs 0.05 from the same seed


def test_static_fields_split_programs(tmp_path):
    """A swept static field makes one program per value; traced floats share a program."""
    path = _write(tmp_path, """\
        base: tiny.yaml
        grid:
          num_envs: [4, 8]
          gamma: [0.9, 0.99]
        """)
    groups = sweep.group_configs(load_sweep(path))
    assert [g.configs for g in groups] == [(0, 1), (2, 3)]
    assert [g.label for g in groups] == ["num_envs=4", "num_envs=8"]


def test_iqm_and_bootstrap_match_numpy_reference():
    scores = np.array([3.0, 100.0, 1.0, 7.0, 2.0, 6.0, 4.0, 5.0])
    assert stats.iqm(scores) == pytest.approx(4.5)  # middle four of 1..7, 100: (3 + 4 + 5 + 6) / 4
    assert stats.iqm(np.array([5.0, 1.0, 9.0])) == pytest.approx(5.0)  # n < 4: the mean
    assert stats.iqm(np.arange(10.0)) == pytest.approx(np.mean(np.arange(2.0, 8.0)))  # drops 2 each end

    strata = [np.array([1.0, 2.0, 10.0, 4.0, 3.0]), np.array([7.0, 0.5, 2.5])]
    got = stats.stratified_bootstrap_ci(strata, stats.iqm, reps=500, seed=11)
    rng = np.random.default_rng(11)
    draws = [rng.integers(0, len(x), size=(500, len(x))) for x in strata]
    values = []
    for b in range(500):
        sample = sorted(np.concatenate([x[d[b]] for x, d in zip(strata, draws, strict=True)]))
        cut = len(sample) // 4
        values.append(sum(sample[cut : len(sample) - cut]) / (len(sample) - 2 * cut))
    assert got.estimate == pytest.approx(np.mean(sorted(np.concatenate(strata))[2:6]))
    assert got.low == pytest.approx(np.percentile(values, 2.5))
    assert got.high == pytest.approx(np.percentile(values, 97.5))

    constant = stats.config_stats(np.full(6, 500.0))
    assert (constant.iqm.low, constant.iqm.high, constant.mean.estimate) == (500.0, 500.0, 500.0)
    partial = stats.config_stats(np.array([1.0, np.nan, 3.0]))
    assert (partial.num_seeds, partial.non_finite, partial.mean.estimate) == (2, 1, 2.0)
    assert stats.rank([constant, partial, stats.config_stats(np.array([np.nan]))]) == [0, 1, 2]


BAD_SWEEPS = {
    "unknown path": ("grid: {trpo.max_kll: [0.01]}", "path 'trpo.max_kll' (did you mean 'trpo.max_kl'?)"),
    "section": ("grid: {trpo: [0.01]}", "'trpo' is a config section"),
    "empty grid": ("grid: {}", "grid is empty"),
    "empty values": ("grid: {gamma: []}", "'gamma' needs a non-empty list"),
    "seed swept": ("grid: {num_seeds: [1, 2]}", "'num_seeds' cannot be swept"),
    "static random": ("random: {count: 2, ranges: {num_envs: {low: 1, high: 8}}}", "'num_envs' is a static"),
    "invalid value": ("grid: {gamma: [0.9, 1.5]}", "grid point gamma=1.5: gamma: must be <= 1.0"),
    "wrong section": ("grid: {harpg.eta0: [0.1]}", "section 'harpg' does not apply to algo 'trpo'"),
    "unknown key": ("grids: {gamma: [0.9]}", "unknown sweep key 'grids' (did you mean 'grid'?)"),
    "missing base": ("base: nowhere.yaml\ngrid: {gamma: [0.9]}", "base: run config 'nowhere.yaml' not found"),
}


@pytest.mark.parametrize("name", sorted(BAD_SWEEPS))
def test_bad_sweep_files_exit_2(tmp_path, capsys, name):
    body, message = BAD_SWEEPS[name]
    text = body if body.startswith("base:") else f"base: tiny.yaml\n{body}\n"
    path = _write(tmp_path, text)
    out = tmp_path / "out"
    assert sweep.main(["--config", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_sweep_too_large_for_memory_exits_2(tmp_path, capsys):
    path = _write(tmp_path, "base: tiny.yaml\nmemory_limit_gb: 1.0e-6\ngrid: {gamma: [0.9, 0.99]}\n")
    out = tmp_path / "out"
    assert sweep.main(["--config", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sweep too large for device memory" in err and "GiB per device" in err
    assert not out.exists()


SWEEP_FILES = sorted((Path(__file__).parent.parent / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEP_FILES, ids=[p.name for p in SWEEP_FILES])
def test_shipped_sweep_files_load(path):
    spec = load_sweep(path)
    assert len(spec.configs) >= 4 and len(sweep.group_configs(spec)) == 1


ZOO_SWEEPS = sorted((Path(__file__).parent.parent / "configs" / "sweeps" / "zoo").glob("*.yaml"))


@pytest.mark.parametrize("path", ZOO_SWEEPS, ids=[p.name for p in ZOO_SWEEPS])
def test_zoo_searches_load_and_contain_the_shipped_config(path):
    """The searches behind configs/zoo/: each loads, and its grid contains the config it chose."""
    spec = load_sweep(path)
    assert spec.base_path.parent.name == "zoo" and spec.base_path.name == path.name
    assert sum(cfg == spec.base for cfg in spec.configs) == 1
