"""Runs that survive: kill -9 / SIGTERM and --resume end bitwise equal to an uninterrupted run; time-based
checkpoints change nothing; the stop signals; resuming a finished run changes nothing; determinism; value
divergence; evaluate; bad --resume input exits 2 and writes nothing. Fault injection with real processes:
kill -9 mid-run, SIGTERM, a full disk (a size-limited tmpfs in a user namespace), a corrupted newest
checkpoint (benchmarks/fault_injection.py runs the many-trial version).

One tiny TRPO CartPole config (2 seeds, 48 updates of 4 x 32 steps, chunks of 2, a checkpoint every 4)
is compiled once into a per-module persistent compilation cache, which the subprocesses share.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from trpojax import config as config_lib
from trpojax import evaluate, train
from trpojax.train import checkpoint, loop

TINY = """\
algo: trpo
env: CartPole-v1
seed: 0
num_seeds: 2
total_env_steps: 6144
num_envs: 4
num_steps: 32
eval_episodes: 4
num_chunks: 24
checkpoint_every: 4
network:
  policy_hidden: [16]
  value_hidden: [16]
"""
NUM_UPDATES = 48
TIMING = {"wall_clock_s", "compile_s", "train_s", "env_steps_per_s", "programs_from_cache"}  # differ between runs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The config file and the environment for subprocesses (sharing the compilation cache)."""
    root = tmp_path_factory.mktemp("resume")
    config = root / "tiny.yaml"
    config.write_text(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRPOJAX_CACHE_DIR", str(root / "jax_cache"))
        yield root, config


@pytest.fixture(scope="module")
def reference(setup):
    """An uninterrupted run (in-process) that the other runs must reproduce."""
    root, config = setup
    out = root / "reference"
    assert train.main(["--config", str(config), "--out", str(out), "--quiet"]) == 0
    return out


def subprocess_env():
    env = dict(os.environ)
    cache = jax.config.jax_compilation_cache_dir  # where the in-process runs put their programs
    if cache:
        env["TRPOJAX_CACHE_DIR"] = cache
    return env


def final_state(run_dir):
    path = checkpoint.checkpoints_dir(run_dir) / str(NUM_UPDATES)
    checkpoint.verify(path)
    with np.load(path / "state.npz") as data:
        return {name: data[name] for name in data.files}


def assert_same_run(run_dir, reference):
    assert (run_dir / "metrics.csv").read_bytes() == (reference / "metrics.csv").read_bytes()
    summaries = [json.loads((d / "summary.json").read_text()) for d in (run_dir, reference)]
    assert [{k: v for k, v in s.items() if k not in TIMING} for s in summaries] == [
        {k: v for k, v in summaries[1].items() if k not in TIMING}
    ] * 2
    ours, theirs = final_state(run_dir), final_state(reference)
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def start_run(config, out):
    return subprocess.Popen(
        [sys.executable, "-m", "trpojax.train", "--config", str(config), "--out", str(out), "--quiet"],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_first_checkpoint(proc, out, timeout=120):
    first = checkpoint.checkpoints_dir(out) / "4"
    deadline = time.monotonic() + timeout
    while not first.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.002)


def test_same_seed_runs_are_identical(setup, reference):
    root, config = setup
    again = root / "again"
    assert train.main(["--config", str(config), "--out", str(again), "--quiet"]) == 0
    assert_same_run(again, reference)
    assert checkpoint.saved_updates(again) == [40, 44, 48]  # keep_checkpoints: 3


def test_kill_9_then_resume_matches_uninterrupted(setup, reference):
    root, config = setup
    out = root / "killed"
    proc = start_run(config, out)
    wait_for_first_checkpoint(proc, out)
    proc.kill()
    proc.wait()
    assert not (out / "summary.json").exists(), "the run finished before it was killed"
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference)


def test_sigterm_checkpoints_exits_143_and_resumes(setup, reference, capsys):
    root, config = setup
    out = root / "interrupted"
    proc = start_run(config, out)
    wait_for_first_checkpoint(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and f"--resume {out}" in stderr
    path, manifest, skipped = checkpoint.latest(out)
    assert skipped == [] and 4 <= manifest["update"] < NUM_UPDATES
    assert not (out / "summary.json").exists()
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_is_recorded_once_and_a_second_one_kills(signum):
    before = {sig: signal.getsignal(sig) for sig in train.cli.STOP_SIGNALS}
    with train.stop_on_signals() as stop:
        assert not stop() and stop.name == ""
        os.kill(os.getpid(), signum)
        deadline = time.monotonic() + 5
        while not stop() and time.monotonic() < deadline:
            time.sleep(0.001)  # the Python-level handler runs between bytecodes of the main thread
        assert stop() and stop.name == signal.Signals(signum).name
        assert stop.exit_code == 128 + signum
        assert all(signal.getsignal(sig) == signal.SIG_DFL for sig in train.cli.STOP_SIGNALS)
    assert {sig: signal.getsignal(sig) for sig in train.cli.STOP_SIGNALS} == before


def test_time_based_checkpoints_change_nothing(setup, reference, monkeypatch):
    """A clock that jumps 1000 s per reading passes the default 600 s interval at every chunk boundary."""
    root, config = setup
    out = root / "every_boundary"
    clock = iter(range(0, 10**9, 1000))
    fake_time = types.SimpleNamespace(
        monotonic=lambda: float(next(clock)), perf_counter=time.perf_counter, time=time.time
    )
    monkeypatch.setattr(loop, "time", fake_time)
    saved, real_save = [], checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda *a, **k: saved.append(k["update"]) or real_save(*a, **k))
    assert train.main(["--config", str(config), "--out", str(out), "--quiet"]) == 0
    assert saved == list(range(2, NUM_UPDATES + 1, 2))  # every chunk boundary, each once
    assert_same_run(out, reference)


def test_resuming_a_finished_run_changes_nothing(setup, reference, capsys):
    root, _ = setup
    out = root / "finished"
    shutil.copytree(reference, out)
    before = snapshot(out)
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert snapshot(out) == before


def test_resume_falls_back_past_a_truncated_checkpoint(setup, reference, capsys):
    root, _ = setup
    out = root / "truncated"
    shutil.copytree(reference, out)
    (out / "summary.json").unlink()
    state = checkpoint.checkpoints_dir(out) / "48" / "state.npz"
    state.write_bytes(state.read_bytes()[:100])
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipping checkpoint" in err and "truncated" in err and "resuming from" in err
    assert_same_run(out, reference)


def test_resume_before_the_first_checkpoint_starts_again(setup, reference, capsys):
    """Killed inside its first checkpoint write: metric rows, only a temporary checkpoint directory."""
    root, _ = setup
    out = root / "no_checkpoint_yet"
    shutil.copytree(reference, out)
    for name in ("summary.json", "learning_curve.png"):
        (out / name).unlink()
    checkpoint.truncate_metrics(out / "metrics.csv", 4)
    remove_checkpoints(out)
    (checkpoint.checkpoints_dir(out) / ".tmp-4-x").mkdir(parents=True)  # the write cut short
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    assert "has no checkpoint; starting it again from update 0" in capsys.readouterr().err
    assert_same_run(out, reference)


def test_resume_falls_back_past_a_corrupted_checkpoint_with_a_warning(setup, reference, capsys):
    root, _ = setup
    out = root / "bitflip"
    shutil.copytree(reference, out)
    (out / "summary.json").unlink()
    state = checkpoint.checkpoints_dir(out) / "48" / "state.npz"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit off: only the checksum sees it
    state.write_bytes(bytes(data))
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: skipping checkpoint" in err and "does not match its checksum" in err
    assert_same_run(out, reference)


def user_namespaces_work():
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-Urm", "true"], capture_output=True
    ).returncode == 0


@pytest.mark.skipif(not user_namespaces_work(), reason="needs unshare -Urm (user and mount namespaces)")
def test_full_disk_exits_1_with_one_line_and_the_run_resumes(setup, reference):
    """A 64 KiB tmpfs holds config.yaml, the metric rows and two checkpoints (~24 KiB each, in 4 KiB pages):
    the run fails writing a later one and must exit 1 with one line, leaving a resumable directory."""
    root, config = setup
    mount, out = root / "tmpfs", root / "full_disk"
    mount.mkdir()
    script = (
        'mount -t tmpfs -o size=64k tmpfs "$1" || exit 99; '
        f'"{sys.executable}" -m trpojax.train --config "$2" --out "$1/run" --quiet; rc=$?; '
        'cp -a "$1/run" "$3"; exit $rc'
    )
    proc = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script, "sh", str(mount), str(config), str(out)],
        env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write") and "No space left" in lines[0]
    path, manifest, skipped = checkpoint.latest(out)
    assert skipped == [] and 0 < manifest["update"] < NUM_UPDATES
    assert not (out / "summary.json").exists()
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    assert_same_run(out, reference)


def snapshot(path):
    return {p: p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}


def damage_all_checkpoints(out):
    for update in checkpoint.saved_updates(out):
        (checkpoint.checkpoints_dir(out) / str(update) / "state.npz").write_bytes(b"")


def remove_checkpoints(out):
    shutil.rmtree(checkpoint.checkpoints_dir(out))


def change_jax_version(out):
    manifest = checkpoint.checkpoints_dir(out) / str(NUM_UPDATES) / "manifest.json"
    data = json.loads(manifest.read_text())
    data["versions"]["jax"] = "0.0.1"
    manifest.write_text(json.dumps(data))


def change_shape(out):
    config = out / "config.yaml"
    config.write_text(config.read_text().replace("policy_hidden:\n  - 16", "policy_hidden:\n  - 32"))


@pytest.mark.parametrize(
    "damage, args, message",
    [
        (damage_all_checkpoints, [], "no complete checkpoint"),
        (change_shape, [], "different config: network.policy_hidden is [16] there, [32]"),
        (change_jax_version, [], "was written by jax 0.0.1, this is jax "),
        (None, ["--set", "seed=1"], "--set and --out do not apply"),
    ],
)
def test_bad_resume_exits_2_and_writes_nothing(setup, reference, capsys, damage, args, message):
    root, _ = setup
    out = root / f"bad_{len(list(root.iterdir()))}"
    shutil.copytree(reference, out)
    if damage is not None:
        damage(out)
    before = snapshot(out)
    assert train.main(["--resume", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert snapshot(out) == before


def test_resume_of_a_missing_directory(setup, capsys):
    root, _ = setup
    assert train.main(["--resume", str(root / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not (root / "nowhere").exists()


def test_value_divergence_stops_after_checkpointing(setup, reference, capsys):
    root, config = setup
    out = root / "diverged"
    # A huge critic step makes seed 0's value loss non-finite at the first update (seed 1 survives it).
    argv = ["--config", str(config), "--out", str(out), "--quiet", "--set", "trpo.critic_lr=3.0e+17"]
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert "non-finite value loss at update 1 of seed 0" in err
    path, manifest, _ = checkpoint.latest(out)
    assert manifest["update"] == 0
    state = checkpoint.load_state(path, train.state_template(config_lib.load(out / "config.yaml")))
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.agent))


def test_evaluate_reproduces_the_summary(reference, capsys):
    assert evaluate.main([str(reference)]) == 0
    out = capsys.readouterr().out
    assert "seed 0:" in out and "seed 1:" in out
    results = json.loads((reference / "eval.json").read_text())
    summary = json.loads((reference / "summary.json").read_text())
    assert results["checkpoint"] == NUM_UPDATES and results["episodes"] == 4 and not results["stochastic"]
    assert [s["return_mean"] for s in results["per_seed"]] == summary["eval_return_per_seed"]
    assert results["return_mean"] == summary["eval_return_mean"]

    assert evaluate.main([str(reference), "--episodes", "2", "--stochastic", "--checkpoint", "44"]) == 0
    results = json.loads((reference / "eval.json").read_text())
    assert results["checkpoint"] == 44 and results["stochastic"]
    assert [len(s["returns"]) for s in results["per_seed"]] == [2, 2]


@pytest.mark.parametrize(
    "args, message", [(["--checkpoint", "7"], "no checkpoint of update 7"), (["--episodes", "0"], ">= 1")]
)
def test_evaluate_bad_input_exits_2_and_writes_nothing(reference, capsys, args, message):
    before = snapshot(reference)
    assert evaluate.main([str(reference), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert snapshot(reference) == before
