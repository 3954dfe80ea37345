"""Command line: ``python -m trpojax.verify [--mdps N] [--seed S] [--json PATH]``.

Argument checking (bad arguments exit 2 with one line, nothing written), the text table, the optional JSON
file and the exit code (0 when every statement holds, 1 naming the first that fails).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from trpojax.verify import suite
from trpojax.verify.suite import NUM_ACTIONS, NUM_STATES, Row

DESCRIPTION = "Executable theory: every theorem behind the methods, checked on exact tabular MDPs and LQR problems."


def format_table(rows: Sequence[Row]) -> str:
    """Render rows as a fixed-width text table."""

    def number(x: float | None) -> str:
        return "-" if x is None else f"{x:.2e}"

    header = (
        f"{'statement':<42} {'kind':<8} {'n':>4} {'worst':>10} {'holds':>5} "
        f"{'med. slack':>10} {'max ratio':>10}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.statement:<42} {r.kind:<8} {r.instances:>4} {number(r.worst):>10} "
            f"{'yes' if r.holds else 'NO':>5} {number(r.median_slack):>10} {number(r.max_ratio):>10}"
        )
    return "\n".join(lines)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _json_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be written, or None; creates nothing."""
    if os.path.isdir(path):
        return f"--json {path} is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"--json {path}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"--json {path} is not writable"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 all hold, 1 one fails, 2 bad arguments)."""
    parser = _ArgumentParser(prog="python -m trpojax.verify", description=DESCRIPTION)
    parser.add_argument("--mdps", type=int, default=20, help="number of random MDPs (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed (>= 0)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    args = parser.parse_args(argv)
    if args.mdps < 1:
        parser.error(f"--mdps must be >= 1, got {args.mdps}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.json is not None and (problem := _json_path_problem(args.json)):
        parser.error(problem)

    start = time.perf_counter()
    rows = suite.run_suite(args.mdps, args.seed)  # looked up at call time, so tests can replace it
    elapsed = time.perf_counter() - start
    print(format_table(rows))
    print(f"{args.mdps} MDPs ({NUM_STATES} states, {NUM_ACTIONS} actions), seed {args.seed}, {elapsed:.1f} s")
    if args.json is not None:
        with open(args.json, "w") as f:
            json.dump(
                {"mdps": args.mdps, "seed": args.seed, "rows": [r._asdict() for r in rows]}, f, indent=2
            )
    failed = [r for r in rows if not r.holds]
    if failed:
        print(f"FAILED: {failed[0].statement} (worst {failed[0].worst:.3e})", file=sys.stderr)
        return 1
    return 0


def entry_point() -> None:
    """``trpojax-verify``: :func:`main` as the process's exit code."""
    sys.exit(main())
