"""Optuna searches (python -m trpojax.search): bad input exits 2 with one line and writes nothing; a
two-generation search on SQLite killed (kill -9) during its second generation and run again keeps the first
generation's trials, fails the killed ones and asks their parameters again (and again after a SIGTERM stop in
the middle of a generation), and ends with trials.csv, best.yaml and the plots; a trial's returns are those of
the same config trained alone.
"""

import contextlib
import csv
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from trpojax import config as config_lib
from trpojax import train
from trpojax.search import cli as search_cli
from trpojax.search import load_search
from trpojax.search.batch import padded_trials
from trpojax.search.report import trial_values
from trpojax.train import StopRequest

BASE = """\
algo: reinforce
env: CartPole-v1
seed: 3
num_seeds: 8
total_env_steps: 1024
num_envs: 4
num_steps: 64
eval_episodes: 2
num_chunks: 1
network:
  policy_hidden: [16]
  value_hidden: [16]
"""
SEARCH = """\
name: tiny
base: tiny.yaml
space:
  reinforce.learning_rate: {low: 0.001, high: 0.1, log: true}
  gae_lambda: {low: 0.8, high: 0.99}
seeds_per_trial: 2
batch_size: 2
trials: 4
sampler: {name: random, seed: 1}
heartbeat_s: 1
"""


def write_search(tmp_path: Path, text: str = SEARCH, base: str = BASE) -> Path:
    (tmp_path / "tiny.yaml").write_text(base)
    path = tmp_path / "search.yaml"
    path.write_text(text)
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("  gae_lambda:", "  gae_lambdaa:"), "unknown hyperparameter path 'gae_lambdaa' (did you mean 'gae_lambda'?)"),
        (("high: 0.99", "high: 0.7"), "space.gae_lambda: empty or inverted range: low 0.8 must be below high 0.7"),
        (("  gae_lambda: {low: 0.8, high: 0.99}", "  network.init_log_std: {low: -1.0, high: 0.0}"),
         "space.network.init_log_std: a static float field cannot take a range; give choices: [...] instead"),
        (("  gae_lambda: {low: 0.8, high: 0.99}", "  num_envs: {low: 1.5, high: 8}"),
         "space.num_envs.low: expected an integer, got 1.5"),
        (("  gae_lambda: {low: 0.8, high: 0.99}", "  network.activation: {choices: [tanh, sigmoidd]}"),
         "space.network.activation: value 'sigmoidd'"),
        (("sampler: {name: random, seed: 1}", "sampler: cma"),
         "sampler: unknown sampler 'cma' (did you mean 'cmaes'?)"),
        (("trials: 4", "trials: 0"), "trials: must be > 0, got 0"),
        (("batch_size: 2", "batchsize: 2"), "unknown search key 'batchsize' (did you mean 'batch_size'?)"),
    ],
)
def test_bad_search_files_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, edit, message):
    path = write_search(tmp_path, SEARCH.replace(*edit))
    out = tmp_path / "out"
    assert search_cli.main(["--config", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_unreachable_storage_and_foreign_directories_exit_2(tmp_path, capsys):
    path = write_search(tmp_path)
    out = tmp_path / "out"
    url = f"sqlite:///{tmp_path}/no/such/dir/study.db"
    assert search_cli.main(["--config", str(path), "--out", str(out), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --storage '{url}' cannot be opened") and err.count("\n") == 1, err
    assert not out.exists()
    url = "postgresql://user:secret@127.0.0.1:9/optuna"  # a password is never printed
    assert search_cli.main(["--config", str(path), "--out", str(out), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "cannot be opened" in err and "secret" not in err and "user:***@" in err and err.count("\n") == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert search_cli.main(["--config", str(path), "--out", str(tmp_path / "other")]) == 2
    assert "not a search directory" in capsys.readouterr().err
    assert os.listdir(tmp_path / "other") == ["notes.txt"]


def test_ranges_choices_and_padding():
    assert [padded_trials(n, 16) for n in (1, 2, 3, 5, 9, 16)] == [1, 2, 4, 8, 16, 16]
    assert padded_trials(3, 3) == 3 and padded_trials(5, 6) == 6


def test_search_space_distributions(tmp_path):
    text = SEARCH.replace(
        "  gae_lambda: {low: 0.8, high: 0.99}",
        "  network.policy_hidden: {choices: [[8], [16, 16]]}\n  reinforce.critic_steps: {low: 1, high: 9, step: 2}",
    )
    search = load_search(write_search(tmp_path, text))
    kinds = {p.path: p for p in search.params}
    hidden = kinds["network.policy_hidden"]
    assert hidden.distribution().choices == ("[8]", "[16, 16]")  # Optuna stores YAML labels
    assert hidden.decode("[16, 16]") == (16, 16)
    assert search.trial_config({"network.policy_hidden": (16, 16)}).network.policy_hidden == (16, 16)
    steps = kinds["reinforce.critic_steps"].distribution()
    assert (steps.low, steps.high, steps.step) == (1, 9, 2) and not kinds["reinforce.critic_steps"].traced
    assert kinds["reinforce.learning_rate"].traced and kinds["reinforce.learning_rate"].distribution().log


class StopAt(StopRequest):
    """A stop request that turns true, as by SIGTERM, at poll number ``poll`` (0-based)."""

    def __init__(self, poll: int):
        super().__init__()
        self.poll = poll

    def __call__(self) -> bool:
        if self.poll == 0:
            self.signum = signal.SIGTERM
        self.poll -= 1
        return super().__call__()


def _running_with_heartbeat(db: Path) -> set[int]:
    """Numbers of the trials RUNNING with a heartbeat recorded (so tagged with their worker)."""
    if not db.exists():
        return set()
    with sqlite3.connect(db, timeout=10) as con:
        try:
            found = con.execute(
                "SELECT number FROM trials JOIN trial_heartbeats USING (trial_id) WHERE state = 'RUNNING'"
            ).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return set()
    return {n for (n,) in found}


def test_killed_search_resumes_and_its_trials_match_a_plain_run(tmp_path, capsys, monkeypatch):
    path = write_search(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "trpojax.search", "--config", str(path), "--out", str(out), "--quiet"]
    env = {**os.environ, "TRPOJAX_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = out / "study.db"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill -9 once the second generation's trials are running
        if _running_with_heartbeat(db) == {2, 3} and (out / "trials.csv").exists():
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = rows(out / "trials.csv")
    assert [(r["trial"], r["state"]) for r in first] == [("0", "COMPLETE"), ("1", "COMPLETE")]

    # Run again (in this process, to save a start-up), stopped as by SIGTERM after its generation's first chunk.
    monkeypatch.setenv("TRPOJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(search_cli, "stop_on_signals", lambda: contextlib.nullcontext(StopAt(1)))
    assert search_cli.main(command[3:]) == 143
    err = capsys.readouterr().err
    assert "trials [2, 3] were left running by a stopped worker: failed, and asked again" in err
    assert "stopped by SIGTERM during trials 4-5" in err
    monkeypatch.undo()
    monkeypatch.setenv("TRPOJAX_CACHE_DIR", str(tmp_path / "cache"))
    assert search_cli.main(command[3:]) == 0  # and once more, to the end
    table = {r["trial"]: r for r in rows(out / "trials.csv")}
    states = [table[str(n)]["state"] for n in range(8)]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "FAIL", "FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert table["0"]["iqm"] == first[0]["iqm"] and table["1"]["iqm"] == first[1]["iqm"]  # kept as they were
    for retry, killed in (("4", "2"), ("5", "3"), ("6", "2"), ("7", "3")):  # the same parameters, asked again
        assert table[retry]["retry_of"] == killed
        assert table[retry]["reinforce.learning_rate"] == table[killed]["reinforce.learning_rate"]
        assert table[retry]["gae_lambda"] == table[killed]["gae_lambda"]
    for name in ("best.yaml", "history.png", "importance.png", "search.yaml"):
        assert (out / name).stat().st_size > 0, name

    # best.yaml is a run config (the base's 8 seeds) whose first 2 seeds are the best trial's runs.
    best = max(table.values(), key=lambda r: float(r["iqm"]) if r["state"] == "COMPLETE" else -np.inf)
    config = config_lib.load(out / "best.yaml")
    assert config.num_seeds == 8
    assert repr(config.reinforce.learning_rate) == best["reinforce.learning_rate"]
    assert repr(config.gae_lambda) == best["gae_lambda"]
    two = dataclasses.replace(config, num_seeds=2)
    train_fn, trainer = jax.jit(train.make_train(two)), train.make_trainer(two)
    for s, key in enumerate(train.seed_keys(two)):
        state, _ = train_fn(key, two)
        batched = jax.tree.map(lambda x: x[None], state)
        alone = np.asarray(trainer.evaluate(batched, train.eval_keys(two)[s : s + 1])).mean()
        np.testing.assert_allclose(float(best[f"eval_return_seed_{s}"]), alone, rtol=1e-5)

    assert search_cli.main(command[3:]) == 0 and len(rows(out / "trials.csv")) == 8  # finished: nothing asked
    path.write_text(path.read_text().replace("high: 0.99", "high: 0.98"))
    assert search_cli.main(command[3:]) == 2
    assert "holds another search (space differs" in capsys.readouterr().err
    assert yaml.safe_load((out / "search.yaml").read_text())["space"]["gae_lambda"]["high"] == 0.99


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "random"])
def test_every_sampler_asks_batches_in_the_space(tmp_path, sampler):
    """Two generations of 4 asked from each sampler (told a known function) stay inside the space."""
    import optuna

    from trpojax.search import study as search_study

    text = SEARCH.replace("sampler: {name: random, seed: 1}", f"sampler: {sampler}")
    text = text.replace("batch_size: 2", "batch_size: 4")
    extra = "  reinforce.critic_steps: {low: 1, high: 9, step: 2}\n  network.activation: {choices: [tanh, relu]}\n"
    text = text.replace("space:\n", "space:\n" + extra)
    search = load_search(write_search(tmp_path, text))
    storage = search_study.open_storage(f"sqlite:///{tmp_path}/s.db", search.heartbeat_s)
    the_study = search_study.open_study(search, storage)
    asked = []
    for _ in range(2):
        trials = search_study.ask(the_study, storage, search, 4)
        for trial in trials:
            values = trial_values(search, trial)
            asked.append(values)
            lr, steps = values["reinforce.learning_rate"], values["reinforce.critic_steps"]
            the_study.tell(trial, -abs(np.log(lr / 0.01)) + steps)
    assert len(asked) == 8 and len({tuple(sorted(v.items())) for v in asked}) == 8
    for values in asked:
        assert 0.001 <= values["reinforce.learning_rate"] <= 0.1 and 0.8 <= values["gae_lambda"] <= 0.99
        assert values["reinforce.critic_steps"] in (1, 3, 5, 7, 9) and values["network.activation"] in ("tanh", "relu")
        search.trial_config(values)  # every asked point is a valid run config
    assert search_study.counts(the_study) == (8, 0)
    assert the_study.best_trial.state == optuna.trial.TrialState.COMPLETE
