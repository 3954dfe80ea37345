"""``python -m trpojax.compare``: two tiny runs and a tiny sweep on one figure, the table's IQM against
``stats.iqm`` of the per-seed evaluation returns, and refusals (exit 2, one line, no figure)."""

import csv
import json
import re
import shutil

import numpy as np
import pytest

from trpojax import compare, sweep, train
from trpojax.core import stats

TINY = """\
algo: reinforce
env: CartPole-v1
seed: 0
num_seeds: 2
total_env_steps: 1024
num_envs: 4
num_steps: 64
eval_episodes: 2
network:
  policy_hidden: [16]
  value_hidden: [16]
"""
SWEEP = """\
base: tiny.yaml
num_seeds: 2
grid:
  gamma: [0.9, 0.97]
"""


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Runs ``a`` and ``b`` (``gamma`` 0.99 and 0.95: a float, so ``b`` loads ``a``'s compiled programs) and
    sweep ``s`` (2 configs x 2 seeds)."""
    root = tmp_path_factory.mktemp("compare")
    (root / "tiny.yaml").write_text(TINY)
    (root / "sweep.yaml").write_text(SWEEP)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRPOJAX_CACHE_DIR", str(root / "jax_cache"))
        for name, gamma in (("a", 0.99), ("b", 0.95)):
            args = ["--config", str(root / "tiny.yaml"), "--set", f"gamma={gamma}", "--out", str(root / name)]
            assert train.main([*args, "--quiet"]) == 0
        assert sweep.main(["--config", str(root / "sweep.yaml"), "--out", str(root / "s"), "--quiet"]) == 0
    return root


def table_rows(out: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_runs_and_sweep_configs_on_one_figure_with_the_eval_iqm_table(dirs, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    assert compare.main([str(dirs / "a"), str(dirs / "b"), str(dirs / "s"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["a", "b", "s: gamma=0.9", "s: gamma=0.97"]
    expected = {name: json.loads((dirs / name / "summary.json").read_text())["eval_return_per_seed"]
                for name in ("a", "b")}
    with (dirs / "s" / "results.csv").open() as f:
        for r in csv.DictReader(f):
            expected.setdefault(f"s: gamma={r['gamma']}", []).append(float(r["eval_return"]))
    for label, scores in expected.items():
        seeds, iqm_cell, mean_cell, steps = rows[label]
        assert seeds == "2" and steps == "1024"
        iqm, low, high = map(float, re.match(r"([-\d.]+) \[([-\d.]+), ([-\d.]+)\]", iqm_cell).groups())
        assert iqm == pytest.approx(float(stats.iqm(np.array(scores))), abs=0.006)
        assert low <= iqm <= high
        assert float(mean_cell.split()[0]) == pytest.approx(np.mean(scores), abs=0.006)


def test_any_metrics_column_of_runs(dirs, tmp_path, capsys):
    out = tmp_path / "grad_norm.png"
    assert compare.main([str(dirs / "a"), str(dirs / "b"), "--metric", "grad_norm", "--out", str(out)]) == 0
    assert out.is_file() and "grad_norm curves of 2 run(s)" in capsys.readouterr().out


def _copy(dirs, tmp_path, edit):
    """A copy of run ``a`` changed by ``edit(path)``."""
    copy = tmp_path / "edited"
    shutil.copytree(dirs / "a", copy)
    edit(copy)
    return copy


def _other_env(path):
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "env": "Acrobot-v1"}))


def _shorter(path):
    lines = (path / "metrics.csv").read_text().splitlines()
    (path / "metrics.csv").write_text("\n".join(lines[:-2]) + "\n")
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "env_steps": 768}))


@pytest.mark.parametrize(
    "edit, extra, message",
    [
        (_other_env, [], "different environments: Acrobot-v1, CartPole-v1"),
        (_shorter, [], "different env-step budgets: 768, 1024"),
        (lambda p: (p / "summary.json").unlink(), [], "unfinished run (no summary.json)"),
        (lambda p: (p / "metrics.csv").unlink(), [], "is neither a run directory"),
        (None, ["--metric", "grad_norm", "{s}"], "sweep '{s}' records only episode_return_mean"),
        (None, ["--metric", "nope"], "--metric 'nope': not recorded in"),
        (None, ["--out", "{tmp}/cmp.svg"], "the figure is written as .png"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_figure(dirs, tmp_path, monkeypatch, capsys, edit, extra, message):
    monkeypatch.chdir(tmp_path)
    second = _copy(dirs, tmp_path, edit) if edit else dirs / "b"
    fill = {"s": str(dirs / "s"), "tmp": str(tmp_path)}
    args = [str(dirs / "a"), str(second), *(a.format(**fill) for a in extra)]
    assert compare.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(**fill) in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.svg"))
