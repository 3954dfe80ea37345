"""Running trpojax's train CLI from a benchmark, and package versions (no JAX import: some benchmarks keep
their parent process free of it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def package_version(package: str) -> str | None:
    """The installed version of ``package``, None if it is not installed."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def train_cli(
    config: str, overrides: dict[str, Any], prefix: str, *, cold: bool = True
) -> tuple[dict[str, Any], list[str], float]:
    """Run ``python -m trpojax.train --config CONFIG --set KEY=VALUE ... --quiet`` in a subprocess in the
    repository root, with outputs in a temporary directory and, when ``cold``, an empty compilation cache (a
    cold compile; else the user's persistent cache, as a user's second run would have it).

    Returns:
        ``(summary, command, process_s)``: the run's summary.json, the command, and the subprocess's wall time.
        Exits the benchmark with the run's stderr if the run fails.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "trpojax.train", "--config", config, "--out", str(out), "--quiet"]
        for key, value in overrides.items():
            cmd += ["--set", f"{key}={value}"]
        env = {**os.environ, "TRPOJAX_CACHE_DIR": str(Path(tmp) / "cache")} if cold else dict(os.environ)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        process_s = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads((out / "summary.json").read_text()), cmd, process_s
