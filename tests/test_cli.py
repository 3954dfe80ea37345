"""The train CLI end to end on a tiny budget, and its bad-input contract (exit 2, one line, nothing written)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
TINY = [
    "--set", "total_env_steps=512", "--set", "num_envs=4", "--set", "num_steps=32",
    "--set", "num_seeds=2", "--set", "eval_episodes=4", "--set", "network.policy_hidden=[16]",
    "--set", "network.value_hidden=[16]", "--set", "trpo.critic_epochs=1",
]


def run_cli(args, tmp_path):
    env = {**os.environ, "TRPOJAX_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "trpojax.train", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )


def test_cli_writes_all_outputs(tmp_path):
    out = tmp_path / "run"
    args = ["--config", str(ROOT / "configs/trpo_cartpole.yaml"), *TINY, "--out", str(out), "--quiet"]
    proc = run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {"config.yaml", "metrics.csv", "summary.json", "learning_curve.png"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    for key in ("algo", "env", "num_seeds", "env_steps", "eval_return_mean", "eval_return_per_seed",
                "wall_clock_s", "compile_s", "env_steps_per_s"):
        assert key in summary
    assert summary["num_seeds"] == 2 and len(summary["eval_return_per_seed"]) == 2
    assert summary["env_steps"] == 512
    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:5] == ["update", "env_steps", "seed", "episode_return_mean", "episode_length_mean"]
    for col in ("kl", "surrogate_gain", "cg_iters", "value_loss"):
        assert col in header
    assert len(lines) == 1 + 4 * 2  # 4 updates x 2 seeds
    resolved = (out / "config.yaml").read_text()
    assert "total_env_steps: 512" in resolved and "policy_hidden:\n  - 16" in resolved
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "trpo.max_kll=0.1"], "unknown config key 'trpo.max_kll' (did you mean 'max_kl'?)"),
        (["--set", "num_envs=abc"], "num_envs: expected int, got str 'abc'"),
        (["--set", "trpo.max_kl=-0.1"], "trpo.max_kl: must be > 0.0"),
        (["--set", "num_envs=0"], "num_envs: must be >= 1"),
        (["--set", "env=Pendulum-v9"], "env: unknown environment 'Pendulum-v9'; did you mean 'Pendulum-v1'"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, extra, message):
    """In this process (``main`` is what the module runs; the missing-file case below runs the real process)."""
    from trpojax import train

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert train.main(["--config", str(ROOT / "configs/trpo_cartpole.yaml"), *extra, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_config_file_exits_2(tmp_path):
    proc = run_cli(["--config", str(tmp_path / "nope.yaml")], tmp_path)
    assert proc.returncode == 2
    assert "cannot read config" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_the_plain_path_runs_without_the_cpu_fast_path(tmp_path):
    """TRPOJAX_FASTCPU=0 takes the path GPUs and TPUs take (jax.random keys, scanned chunks, XLA's default
    options, no executable cache), with the same outputs as the fast path's run above."""
    out = tmp_path / "run"
    args = ["--config", str(ROOT / "configs/trpo_cartpole.yaml"), *TINY, "--out", str(out), "--quiet"]
    env = {**os.environ, "TRPOJAX_CACHE_DIR": str(tmp_path / "cache"), "TRPOJAX_FASTCPU": "0"}
    proc = subprocess.run([sys.executable, "-m", "trpojax.train", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {"config.yaml", "metrics.csv", "summary.json", "learning_curve.png"} <= {p.name for p in out.iterdir()}
    assert not (tmp_path / "cache" / "trpojax-executables").exists()  # no executable cache
    summary = json.loads((out / "summary.json").read_text())
    assert summary["programs_from_cache"] == 0 and len(summary["eval_return_per_seed"]) == 2
    assert all(r > 0 for r in summary["eval_return_per_seed"])  # CartPole pays 1 per step
    lines = (out / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:5] == ["update", "env_steps", "seed", "episode_return_mean", "episode_length_mean"]
    assert {"kl", "surrogate_gain", "cg_iters", "value_loss"} <= set(header)
    assert len(lines) == 1 + 4 * 2  # 4 updates x 2 seeds


def test_console_scripts_are_installed():
    """pyproject's [project.scripts] beside ``python -m trpojax.<command>``: each installed script names a
    callable that exists, and one of them runs (they are all the same kind of wrapper)."""
    from importlib.metadata import entry_points

    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.name.startswith("trpojax-")}
    assert sorted(scripts) == ["trpojax-compare", "trpojax-evaluate", "trpojax-search", "trpojax-sweep",
                               "trpojax-train", "trpojax-verify"]
    assert all(callable(ep.load()) for ep in scripts.values())
    proc = subprocess.run([str(Path(sys.executable).parent / "trpojax-train"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--resume" in proc.stdout, proc.stderr
