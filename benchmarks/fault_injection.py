"""Fault injection with real processes: kill -9 and SIGTERM at seeded random moments, then --resume, compared
byte for byte with an uninterrupted run (issue 16).

Three parts, each optional:

1. ``--train-trials N`` (default 20): a small TRPO CartPole run (2 seeds, 48 updates in chunks of 2, a
   checkpoint every 4 updates and, with ``checkpoint_interval_s: 0.02``, at almost every boundary, so kills
   land in checkpoint writes too). Each trial starts the run, kills it with SIGKILL at a seeded uniform time
   within the uninterrupted run's training window (from metrics.csv appearing to the final checkpoint
   appearing), records what the kill left (a temporary checkpoint directory = killed inside a checkpoint
   write, a cut metrics row), resumes it with ``--resume`` and compares metrics.csv (bytes), summary.json
   (timing fields aside) and the final state.npz arrays with the uninterrupted run's.
2. ``--sweep-trials N`` (default 10): a small sweep (2 programs, 2 configs x 2 seeds each), killed the same
   way (within the window from sweep.yaml appearing to the last program's final checkpoint), resumed with
   ``python -m trpojax.sweep --resume``; results.csv and curves.csv must be identical bytes and summary.md
   identical outside its timing cells.
3. ``--sigterm``: SIGTERM timing for every shipped config (configs/*.yaml): SIGTERM once the first chunk's
   metrics rows are on disk, the seconds until the process exits, its exit code (143 expected), and that
   the newest checkpoint verifies. Plus, for the small TRPO run, SIGTERM during compilation (the moment
   the handlers are installed is not observable from outside, so at a fixed 4 s after start; the outcome is
   classified by what is on disk) and during the final evaluation (once the final checkpoint exists).

Usage::

    python benchmarks/fault_injection.py [--train-trials 20] [--sweep-trials 10] [--sigterm] [--seed 0]
        [--json PATH]

Every subprocess shares one compilation cache in the work directory (warmed by the uninterrupted runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"wall_clock_s", "compile_s", "train_s", "env_steps_per_s", "programs_from_cache"}
TRAIN_CONFIG = """\
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
checkpoint_interval_s: 0.02
network:
  policy_hidden: [16]
  value_hidden: [16]
"""
SWEEP_BASE = """\
algo: trpo
env: CartPole-v1
seed: 3
num_seeds: 1
total_env_steps: 3072
num_envs: 4
num_steps: 16
eval_episodes: 2
num_chunks: 12
trpo:
  cg_iters: 3
  critic_epochs: 1
  critic_minibatches: 2
"""
SWEEP = """\
base: base.yaml
num_seeds: 2
set:
  checkpoint_every: 4
  checkpoint_interval_s: 0.02
grid:
  trpo.max_kl: [0.002, 0.05]
  num_envs: [2, 4]
"""


def env(work: Path) -> dict[str, str]:
    """The subprocesses' environment: one shared compilation cache."""
    return {**os.environ, "TRPOJAX_CACHE_DIR": str(work / "jax_cache")}


def start(cmd: list[str], work: Path) -> subprocess.Popen:
    """Start a trpojax CLI command (stdout and stderr to files in ``work``)."""
    return subprocess.Popen([sys.executable, "-m", *cmd], cwd=work, env=env(work),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600.0) -> float:
    """Poll until ``path`` exists (or the process ends); the monotonic time it appeared."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            return float("nan")
        time.sleep(0.002)
    return time.monotonic()


def final_state(run_dir: Path) -> dict[str, np.ndarray]:
    """The arrays of the newest checkpoint's state.npz."""
    latest = max((p for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    with np.load(latest / "state.npz") as data:
        return {name: data[name] for name in data.files}


def same_run(run_dir: Path, reference: Path) -> list[str]:
    """The differences between a resumed run and the uninterrupted one (empty: identical)."""
    problems = []
    if (run_dir / "metrics.csv").read_bytes() != (reference / "metrics.csv").read_bytes():
        problems.append("metrics.csv differs")
    summaries = [json.loads((d / "summary.json").read_text()) for d in (run_dir, reference)]
    if [{k: v for k, v in s.items() if k not in TIMING} for s in summaries][0] != {
        k: v for k, v in summaries[1].items() if k not in TIMING
    }:
        problems.append("summary.json differs")
    ours, theirs = final_state(run_dir), final_state(reference)
    if ours.keys() != theirs.keys() or any(not np.array_equal(ours[k], theirs[k]) for k in ours):
        problems.append("final state differs")
    return problems


def what_kill_left(run_dir: Path) -> dict[str, Any]:
    """What a kill left on disk: checkpoints, temporary directories, a cut metrics row."""
    ckpts = run_dir / "checkpoints"
    names = [p.name for p in ckpts.iterdir()] if ckpts.is_dir() else []
    metrics = run_dir / "metrics.csv"
    text = metrics.read_bytes() if metrics.is_file() else b""
    return {
        "checkpoints": sorted(int(n) for n in names if n.isdigit()),
        "in_checkpoint_write": any(n.startswith(".tmp-") for n in names),
        "cut_metrics_row": bool(text) and not text.endswith(b"\n"),
        "metric_rows": max(text.count(b"\n") - 1, 0),
        "finished": (run_dir / "summary.json").exists(),
    }


def train_trials(work: Path, trials: int, rng: np.random.Generator) -> dict[str, Any]:
    """Part 1: kill -9 trials on a small TRPO run."""
    config = work / "train.yaml"
    config.write_text(TRAIN_CONFIG)
    reference = work / "train_reference"
    subprocess.run([sys.executable, "-m", "trpojax.train", "--config", str(config), "--out", "warmup",
                    "--quiet"], cwd=work, env=env(work), check=True, capture_output=True)
    t0 = time.monotonic()
    proc = start(["trpojax.train", "--config", str(config), "--out", str(reference), "--quiet"], work)
    t_metrics = wait_for(reference / "metrics.csv", proc)
    t_final = wait_for(reference / "checkpoints" / "48", proc)
    proc.communicate()
    t_end = time.monotonic()
    assert proc.returncode == 0
    window = t_final - t_metrics
    print(f"train reference: {t_end - t0:.2f} s, training window {window:.2f} s from metrics.csv to the final "
          "checkpoint", flush=True)
    results = []
    for trial in range(trials):
        out = work / f"train_trial_{trial}"
        delay = float(rng.uniform(0.0, window))
        proc = start(["trpojax.train", "--config", str(config), "--out", str(out), "--quiet"], work)
        wait_for(out / "metrics.csv", proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        left = what_kill_left(out)
        resume = subprocess.run([sys.executable, "-m", "trpojax.train", "--resume", str(out), "--quiet"],
                                cwd=work, env=env(work), capture_output=True, text=True)
        problems = same_run(out, reference) if resume.returncode == 0 else [f"resume exit {resume.returncode}: "
                                                                           f"{resume.stderr.strip()[-200:]}"]
        results.append({"trial": trial, "kill_after_s": round(delay, 3), "killed_rc": proc.returncode, **left,
                        "resume_rc": resume.returncode, "identical": not problems, "problems": problems})
        print(f"train trial {trial}: kill at +{delay:.2f} s, left {left}, resume rc {resume.returncode}, "
              f"{'identical' if not problems else problems}", flush=True)
        shutil.rmtree(out)
    return {"window_s": window, "trials": results}


def timing_free(text: str) -> str:
    """summary.md without its compile s, train s and env steps/s cells."""
    return re.sub(r"\| [0-9.]+ \| [0-9.]+ \| [0-9,]+ \| ([0-9.]+ MiB) \|", r"| \1 |", text)


def same_sweep(out: Path, reference: Path) -> list[str]:
    """Differences between a resumed sweep's outputs and the uninterrupted one's."""
    problems = [f"{name} differs" for name in ("results.csv", "curves.csv")
                if (out / name).read_bytes() != (reference / name).read_bytes()]
    if timing_free((out / "summary.md").read_text()) != timing_free((reference / "summary.md").read_text()):
        problems.append("summary.md differs")
    return problems


def sweep_trials(work: Path, trials: int, rng: np.random.Generator) -> dict[str, Any]:
    """Part 2: kill -9 trials on a small two-program sweep."""
    (work / "base.yaml").write_text(SWEEP_BASE)
    sweep = work / "sweep.yaml"
    sweep.write_text(SWEEP)
    subprocess.run([sys.executable, "-m", "trpojax.sweep", "--config", "sweep.yaml", "--out", "sweep_warmup",
                    "--quiet"], cwd=work, env=env(work), check=True, capture_output=True)
    reference = work / "sweep_reference"
    proc = start(["trpojax.sweep", "--config", "sweep.yaml", "--out", str(reference), "--quiet"], work)
    t_start = wait_for(reference / "sweep.yaml", proc)
    t_final = wait_for(reference / "groups" / "2" / "checkpoints" / "48", proc)
    proc.communicate()
    assert proc.returncode == 0, proc.stderr
    window = t_final - t_start
    print(f"sweep reference: window {window:.2f} s from sweep.yaml to the last program's final checkpoint",
          flush=True)
    results = []
    for trial in range(trials):
        out = work / f"sweep_trial_{trial}"
        delay = float(rng.uniform(0.0, window))
        proc = start(["trpojax.sweep", "--config", "sweep.yaml", "--out", str(out), "--quiet"], work)
        wait_for(out / "sweep.yaml", proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        groups = out / "groups"
        left = {g.name: sorted(int(p.name) for p in (g / "checkpoints").iterdir() if p.name.isdigit())
                for g in sorted(groups.iterdir()) if (g / "checkpoints").is_dir()} if groups.is_dir() else {}
        finished = (out / "curves.png").exists()
        resume = subprocess.run([sys.executable, "-m", "trpojax.sweep", "--resume", str(out), "--quiet"],
                                cwd=work, env=env(work), capture_output=True, text=True)
        problems = same_sweep(out, reference) if resume.returncode == 0 else [
            f"resume exit {resume.returncode}: {resume.stderr.strip()[-200:]}"]
        results.append({"trial": trial, "kill_after_s": round(delay, 3), "checkpoints": left,
                        "finished_before_kill": finished, "resume_rc": resume.returncode,
                        "identical": not problems, "problems": problems})
        print(f"sweep trial {trial}: kill at +{delay:.2f} s, checkpoints {left}, finished {finished}, resume rc "
              f"{resume.returncode}, {'identical' if not problems else problems}", flush=True)
        shutil.rmtree(out)
    return {"window_s": window, "trials": results}


def sigterm_after_first_chunk(work: Path, config: Path) -> dict[str, Any]:
    """SIGTERM once metrics.csv holds a data row; seconds to exit, exit code, newest checkpoint."""
    out = work / f"sigterm_{config.stem}"
    proc = start(["trpojax.train", "--config", str(config), "--out", str(out), "--quiet"], work)
    t0 = time.monotonic()
    metrics = out / "metrics.csv"
    while proc.poll() is None and not (metrics.is_file() and metrics.read_bytes().count(b"\n") >= 2):
        time.sleep(0.005)
    startup = time.monotonic() - t0
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate()
    seconds = time.monotonic() - sent
    row = {"config": config.name, "rc": proc.returncode, "sigterm_to_exit_s": round(seconds, 3),
           "startup_to_first_chunk_s": round(startup, 2)}
    ckpts = out / "checkpoints"
    updates = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if ckpts.is_dir() else []
    row["checkpoint"] = updates[-1] if updates else None
    if proc.returncode not in (143,):
        row["stderr"] = stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""
    shutil.rmtree(out, ignore_errors=True)
    return row


def sigterm_phases(work: Path) -> list[dict[str, Any]]:
    """SIGTERM on the small TRPO run during compilation (soon after start) and during the final evaluation."""
    config = work / "train.yaml"
    config.write_text(TRAIN_CONFIG)
    rows = []
    for phase in ("compilation", "final evaluation"):
        out = work / f"phase_{phase[:4]}"
        proc = start(["trpojax.train", "--config", str(config), "--out", str(out), "--quiet",
                      "--set", "compilation_cache=false"], work)
        if phase == "compilation":
            time.sleep(4.0)  # imports take ~2-3 s; the uncached compile of this run takes ~10 s
        else:
            wait_for(out / "checkpoints" / "48", proc)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate()
        seconds = time.monotonic() - sent
        left = what_kill_left(out) if out.exists() else {}
        resume = subprocess.run([sys.executable, "-m", "trpojax.train", "--resume", str(out), "--quiet"],
                                cwd=work, env=env(work), capture_output=True, text=True) if out.exists() else None
        rows.append({"phase": phase, "rc": proc.returncode, "sigterm_to_exit_s": round(seconds, 3), **left,
                     "message": stderr.strip().splitlines()[-1][:160] if stderr.strip() else "",
                     "resume_rc": None if resume is None else resume.returncode})
        print(f"SIGTERM during {phase}: {rows[-1]}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return rows


def main() -> None:
    """Run the parts asked for and print (and optionally save) the outcomes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-trials", type=int, default=20)
    parser.add_argument("--sweep-trials", type=int, default=10)
    parser.add_argument("--sigterm", action="store_true", help="SIGTERM timing on every shipped config")
    parser.add_argument("--configs", nargs="*", help="shipped configs for --sigterm (default configs/*.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the outcomes here")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    report: dict[str, Any] = {"seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="trpojax_faults_") as tmp:
        work = Path(tmp)
        if args.train_trials:
            report["train"] = train_trials(work, args.train_trials, rng)
        if args.sweep_trials:
            report["sweep"] = sweep_trials(work, args.sweep_trials, rng)
        if args.sigterm:
            report["phases"] = sigterm_phases(work)
            configs = [Path(c).resolve() for c in args.configs] if args.configs else sorted(
                (ROOT / "configs").glob("*.yaml"))
            report["sigterm"] = []
            for config in configs:
                row = sigterm_after_first_chunk(work, config)
                print(f"SIGTERM {row}", flush=True)
                report["sigterm"].append(row)
    for part in ("train", "sweep"):
        if part in report:
            trials = report[part]["trials"]
            ok = sum(t["identical"] for t in trials)
            print(f"{part}: {ok}/{len(trials)} resumed runs identical to the uninterrupted one")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
