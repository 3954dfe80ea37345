"""benchmarks/accelerator.py, run as a real subprocess on the CPU at tiny sizes (``--tiny``) with a 100 s budget.

The budget lets part (a)'s first CartPole item and the learning run (c) through the CLI run, and makes the
script skip part (b)'s physics items (budgeted at 60 s of compilation each on a CPU), so the test also sees
recorded skips. About 40 s of wall time on 2 busy cores.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_KEYS = {"machine", "jax_version", "backend", "devices", "tiny", "budget_s", "plan", "items", "wall_s"}
ITEM_KEYS = {"part", "name", "env", "config", "overrides", "num_envs", "num_seeds", "num_steps", "status", "reason",
             "compile_s", "run_s", "env_steps", "env_steps_per_s"}


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_tiny_session_writes_the_json_and_the_table(tmp_path):
    out = tmp_path / "accelerator.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TRPOJAX_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.accelerator", "--tiny", "--budget-s", "100", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert TOP_KEYS <= result.keys()
    assert result["tiny"] is True and result["backend"] == "cpu" and result["devices"]
    assert result["jax_version"] and result["machine"] and result["wall_s"] < result["budget_s"]

    items = result["items"]
    assert [item["part"] for item in items] == ["a", "a", "b", "b", "c"]
    for item in items:
        assert ITEM_KEYS <= item.keys(), item["name"]
        assert item["status"] in ("ok", "skipped"), (item["name"], item["reason"])
        assert isinstance(item["overrides"], list) and item["config"].endswith(".yaml")
        if item["status"] == "ok":
            assert positive(item["compile_s"]) and positive(item["run_s"]), item["name"]
            assert positive(item["env_steps_per_s"]) and positive(item["env_steps"]), item["name"]
        else:
            assert isinstance(item["reason"], str) and item["reason"], item["name"]
            assert item["env_steps_per_s"] is None
    first, _, *physics, learning = items
    assert first["status"] == "ok" and first["env"] == "CartPole-v1"
    assert first["env_steps"] == first["num_envs"] * first["num_seeds"] * first["num_steps"] * first["updates"]
    assert [item["env"] for item in physics] == ["playground:CartpoleBalance", "brax:inverted_pendulum"]
    assert all(item["status"] == "skipped" for item in physics)

    assert learning["status"] == "ok", learning["reason"]
    assert 0 < learning["total_env_steps"] <= 4096 and f"total_env_steps={learning['total_env_steps']}" in (
        learning["overrides"])
    measured = [item["name"] for item in items[:2] if item["status"] == "ok"]
    assert learning["estimate"]["updates"] >= 1 and learning["estimate"]["basis"] in measured  # same env
    assert len(learning["eval_return_per_seed"]) == 2 and all(r > 0 for r in learning["eval_return_per_seed"])
    assert positive(learning["eval_return_mean"]) and positive(learning["wall_clock_s"])
    assert (Path(learning["run_dir"]) / "summary.json").is_file()

    table = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("part"))
    assert "env steps/s" in table[header] and len(table) >= header + 1 + len(items)
    assert "eval return" in table[header + len(items)] and "skipped" in table[header + 3]
