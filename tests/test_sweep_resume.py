"""Resumable sweeps: a sweep stopped at a chunk boundary (as by SIGTERM) and resumed writes the same
results.csv, curves.csv and summary.md (timing columns aside) as an uninterrupted one, without re-running a
finished program; resuming a finished sweep changes nothing; a changed sweep or code version exits 2.

The stop is requested in-process through the CLI's stop predicate after a fixed number of chunk boundaries
(the signal handling itself is tested in test_resume.py and tests/test_faults.py with real processes).
"""

import contextlib
import json
import re
import shutil
import signal
import textwrap
from pathlib import Path

import pytest
import yaml

from trpojax import sweep
from trpojax.sweep import cli as sweep_cli
from trpojax.sweep import durable
from trpojax.train import StopRequest, checkpoint

BASE = """\
algo: trpo
env: CartPole-v1
seed: 3
num_seeds: 1
total_env_steps: 256
num_envs: 2
num_steps: 16
eval_episodes: 2
num_chunks: 2
compilation_cache: false
trpo:
  cg_iters: 3
  critic_epochs: 1
  critic_minibatches: 2
"""
SWEEP = """\
base: tiny.yaml
num_seeds: 2
set:
  checkpoint_every: 2
grid:
  trpo.max_kl: [0.002, 0.05]
"""
OUTPUTS = ("results.csv", "curves.csv", "summary.md")


def timing_free(text: str) -> str:
    """summary.md without the per-program compile s, train s and env steps/s cells."""
    return re.sub(r"\| [0-9.]+ \| [0-9.]+ \| [0-9,]+ \| ([0-9.]+ MiB) \|", r"| \1 |", text)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The sweep file and an uninterrupted sweep's directory.

    The sweep's programs are compiled once for the module: the CLI's build_programs is memoised on the
    resolved sweep (compiled programs hold no run state), which keeps the three sessions below cheap.
    """
    root = tmp_path_factory.mktemp("sweep_resume")
    (root / "tiny.yaml").write_text(BASE)
    path = root / "sweep.yaml"
    path.write_text(textwrap.dedent(SWEEP))
    compiled = {}

    def build_once(spec, mesh):
        key = yaml.safe_dump(spec.resolved)
        if key not in compiled:
            compiled[key] = real_build(spec, mesh)
        return compiled[key]

    real_build = sweep_cli.build_programs
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_cli, "build_programs", build_once)
        reference = root / "reference"
        assert sweep.main(["--config", str(path), "--out", str(reference), "--quiet"]) == 0
        yield root, path, reference


def outputs(out: Path) -> dict[str, str]:
    return {name: timing_free((out / name).read_text()) for name in OUTPUTS}


class StopAfter(StopRequest):
    """A stop request that turns true (as by SIGTERM) at poll number ``polls`` (0-based)."""

    def __init__(self, polls: int):
        super().__init__()
        self.polls = polls

    def __call__(self) -> bool:
        self.polls -= 1
        if self.polls < 0:
            self.signum = signal.SIGTERM
        return super().__call__()


def stop_after(polls: int):
    """A stand-in for the CLI's stop_on_signals yielding :class:`StopAfter`."""
    return contextlib.contextmanager(lambda: (yield StopAfter(polls)))


def spy_on_run_program(monkeypatch):
    ran = []
    real_run = sweep_cli.run_program
    monkeypatch.setattr(sweep_cli, "run_program", lambda prog, *a: ran.append(prog.group) or real_run(prog, *a))
    return ran


def test_stopped_sweep_resumes_to_identical_outputs(setup, monkeypatch, capsys):
    root, path, reference = setup
    out = root / "stopped"
    # One program of 8 updates in chunks of 2; polls: its start, then boundaries 2, 4: the stop lands at 4.
    monkeypatch.setattr(sweep_cli, "stop_on_signals", stop_after(2))
    assert sweep.main(["--config", str(path), "--out", str(out), "--quiet"]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM in program 1/1 after update 4" in err and f"--resume {out}" in err
    assert not (out / "results.csv").exists()
    assert checkpoint.saved_updates(durable.group_dir(out, 0)) == [2, 4]  # checkpoint_every: 2, then the stop

    monkeypatch.setattr(sweep_cli, "stop_on_signals", stop_after(10**6))
    assert sweep.main(["--resume", str(out), "--quiet"]) == 0
    assert outputs(out) == outputs(reference)
    assert timing_free((out / "summary.md").read_text()) != (out / "summary.md").read_text()  # the regex bites


def test_a_finished_program_is_not_run_again(setup, monkeypatch, tmp_path):
    _, _, reference = setup
    out = tmp_path / "before_the_plot"
    shutil.copytree(reference, out)
    for name in ("curves.png", *OUTPUTS):  # as if killed after the last program's final checkpoint
        (out / name).unlink()
    ran = spy_on_run_program(monkeypatch)
    assert sweep.main(["--resume", str(out), "--quiet"]) == 0
    assert ran == []
    assert outputs(out) == outputs(reference)


def test_resuming_a_finished_sweep_changes_nothing(setup, capsys):
    _, _, reference = setup
    before = {p: p.read_bytes() for p in sorted(reference.rglob("*")) if p.is_file()}
    assert sweep.main(["--resume", str(reference), "--quiet"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in sorted(reference.rglob("*")) if p.is_file()} == before


def test_changed_sweep_or_code_version_exits_2(setup, capsys, tmp_path):
    root, path, reference = setup
    moved = tmp_path / "copy"
    shutil.copytree(reference, moved)
    (moved / "curves.png").unlink()
    manifest = checkpoint.latest(durable.group_dir(moved, 0))[0] / "manifest.json"
    data = json.loads(manifest.read_text())
    data["versions"]["jaxlib"] = "0.0.1"
    manifest.write_text(json.dumps(data))
    assert sweep.main(["--resume", str(moved)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "written by jaxlib 0.0.1" in err

    text = path.read_text()
    path.write_text(text.replace("[0.002, 0.05]", "[0.002, 0.06]"))
    try:
        assert sweep.main(["--resume", str(reference)]) == 2
    finally:
        path.write_text(text)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the sweep changed since" in err and "grid.trpo.max_kl" in err
