"""Search outputs: trials.csv, best.yaml, history.png and importance.png, rewritten after each generation.

``trials.csv`` has one row per trial of the study (every worker's): its number, state, objective value, each
parameter (as a config value), each seed's final eval return, the worker and the trial it repeats, if any.
``best.yaml`` is the best trial's run config with the base config's ``num_seeds``, ready for
``python -m trpojax.train --config best.yaml``. ``history.png`` plots each trial's value and the best so far;
``importance.png`` Optuna's parameter importances (PED-ANOVA, which needs no scikit-learn) once two trials
completed with different values.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from trpojax import config as config_lib
from trpojax.search.spec import Search
from trpojax.search.study import FAILURE_ATTR, HOST_ATTR, PID_ATTR, RETRY_ATTR, import_optuna
from trpojax.sweep.report import fmt
from trpojax.train import outputs

RETURNS_ATTR = "returns"  # user attr: the trial's per-seed final eval returns


def trial_values(search: Search, trial: Any) -> dict[str, Any]:
    """A trial's parameters as config values ({path: value})."""
    return {p.path: p.decode(trial.params[p.path]) for p in search.params if p.path in trial.params}


def trials_csv(search: Search, trials: list[Any]) -> str:
    """The text of trials.csv for ``trials`` (Optuna ``FrozenTrial`` objects)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    seeds = [f"eval_return_seed_{i}" for i in range(search.seeds_per_trial)]
    writer.writerow(["trial", "state", search.objective, *(p.path for p in search.params), *seeds,
                     "worker", "retry_of", "failure", "seconds"])
    for trial in trials:
        values = trial_values(search, trial)
        returns = trial.user_attrs.get(RETURNS_ATTR, [math.nan] * search.seeds_per_trial)
        seconds = trial.duration.total_seconds() if trial.duration is not None else math.nan
        worker = f"{trial.user_attrs.get(HOST_ATTR, '')}:{trial.user_attrs.get(PID_ATTR, '')}"
        writer.writerow([
            trial.number, trial.state.name, fmt(trial.value) if trial.value is not None else "",
            *(fmt(values[p.path]) if p.path in values else "" for p in search.params),
            *(fmt(float(r)) for r in returns), worker, trial.user_attrs.get(RETRY_ATTR, ""),
            trial.user_attrs.get(FAILURE_ATTR, ""), f"{seconds:.1f}",
        ])
    return buffer.getvalue()


def best_yaml(search: Search, trial: Any) -> str:
    """best.yaml: the run config of ``trial`` (the base config's ``num_seeds``), with a comment naming it."""
    config = config_lib.from_dict(search.run_data(trial_values(search, trial)))
    header = (f"# Best trial of search {search.name!r}: trial {trial.number}, {search.objective} of the final eval "
              f"return over {search.seeds_per_trial} seeds = {trial.value:.6g}.\n"
              "# Train it: python -m trpojax.train --config best.yaml\n")
    return header + config_lib.dump(config)


def plot_history(path: Path, search: Search, trials: list[Any]) -> None:
    """history.png: every finished trial's objective value by trial number and the best so far."""
    plt = outputs.pyplot()
    done = [t for t in trials if t.value is not None and math.isfinite(t.value)]
    fig, ax = plt.subplots(figsize=(7, 4))
    numbers = [t.number for t in done]
    ax.scatter(numbers, [t.value for t in done], s=14, alpha=0.7, label="trial")
    best, running = [], -math.inf
    for t in done:
        running = max(running, t.value)
        best.append(running)
    ax.step(numbers, best, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{search.objective} of final eval return ({search.seeds_per_trial} seeds)")
    ax.set_title(f"search {search.name}: {len(done)} trials")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def plot_importance(path: Path, search: Search, study: Any) -> bool:
    """importance.png: Optuna's PED-ANOVA parameter importances; False (nothing written) with too few trials."""
    optuna = import_optuna()
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if math.isfinite(t.value)]
    if len(done) < 2 or len({t.value for t in done}) < 2:
        return False
    importances = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
    )
    plt = outputs.pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)))
    ax.barh(names, [importances[n] for n in names], color="C0")
    ax.set_xlabel("importance (PED-ANOVA, normalised)")
    ax.set_title(f"search {search.name}: {len(done)} complete trials")
    fig.tight_layout()
    _save(fig, path)
    return True


def _save(fig: Any, path: Path) -> None:
    plt = outputs.pyplot()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_outputs(out_dir: Path, search: Search, study: Any) -> Any:
    """Write trials.csv, best.yaml (once a trial completed), history.png and importance.png; the best trial
    (or None)."""
    optuna = import_optuna()
    trials = study.get_trials(deepcopy=False)
    outputs.write_text_atomic(out_dir / "trials.csv", trials_csv(search, trials))
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return None
    best = study.best_trial
    outputs.write_text_atomic(out_dir / "best.yaml", best_yaml(search, best))
    plot_history(out_dir / "history.png", search, trials)
    plot_importance(out_dir / "importance.png", search, study)
    return best
