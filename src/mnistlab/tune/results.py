"""A study's results, written into each worker's study folder: trials.csv, best.toml,
summary.json and the plots (optimisation history, parameter importances).

    mnistlab tune --study runs/tune --trials 0   # only (re)writes them from the study as it stands
"""

from __future__ import annotations

import csv
import dataclasses
import io
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from mnistlab.config import Config, TrainConfig, write_config
from mnistlab.files import atomic_write, atomic_write_json, atomic_write_text
from mnistlab.runs import library_versions
from mnistlab.tune.space import Param, trial_config


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial of the study, every worker's, by number: the trials table."""
    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        retried = trial.system_attrs.get("failed_trial")
        note = trial.user_attrs.get("error") or trial.user_attrs.get("note") or ""
        if retried is not None:
            note = f"retry of #{retried}" + (f"; {note}" if note else "")
        rows.append({
            "number": trial.number,
            "state": trial.state.name.lower(),
            # A pruned trial's value is its last reported validation accuracy (Optuna's rule).
            "val_accuracy": None if trial.value is None else round(trial.value, 6),
            "epochs": trial.user_attrs.get("epochs_run", trial.last_step),
            "parameters": trial.user_attrs.get("parameters"),
            "seconds": round(trial.duration.total_seconds(), 1) if trial.duration else None,
            "worker": trial.user_attrs.get("worker", ""),
            "run": trial.user_attrs.get("run", ""),
            "note": note,
            **trial.params,
        })
    return rows


def format_trials(rows: list[dict[str, Any]], best: int | None = None) -> str:
    """The trials table as text, the best trial marked with *."""
    fixed = ("number", "state", "val_accuracy", "epochs", "parameters", "seconds", "worker", "run", "note")
    lines = [f"{'#':>5}  {'state':<8}  {'val acc':>8}  {'epochs':>6}  {'weights':>9}  {'s':>6}  settings"]
    for r in rows:
        acc = f"{r['val_accuracy'] * 100:.2f} %" if r["val_accuracy"] is not None else "-"
        settings = " ".join(f"{k}={_short(v)}" for k, v in r.items() if k not in fixed)
        note = f"  ({r['note']})" if r["note"] else ""
        mark = "*" if r["number"] == best else " "
        weights = f"{r['parameters']:,}" if r["parameters"] else "-"
        lines.append(f"{mark}{r['number']:>4}  {r['state']:<8}  {acc:>8}  {r['epochs'] or '-':>6}  {weights:>9}  "
                     f"{r['seconds'] if r['seconds'] is not None else '-':>6}  {settings}{note}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_results(study: optuna.Study, study_dir: Path, params: Mapping[str, Param], base: Config,
                  storage: str = "") -> dict[str, Any]:
    """Write trials.csv, best.toml, summary.json and the plots into `study_dir`; return the summary."""
    rows = trial_rows(study)
    buffer = io.StringIO()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(study_dir / "trials.csv", buffer.getvalue())

    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail", "running", "waiting")}
    summary: dict[str, Any] = {"study": study.study_name, "storage": storage, "study_dir": str(study_dir),
                               "trials": len(rows), **counts, "best": None, "files": {"trials": "trials.csv"}}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = max(complete, key=lambda t: t.value)
        cfg = trial_config(optuna.trial.FixedTrial(best.params), params, base, study.study_name)
        # Retraining from best.toml repeats the best trial; the run folder and the progress
        # display are the retraining's own.
        run = dataclasses.replace(cfg.train, out="", verbose=TrainConfig().verbose)
        write_config(dataclasses.replace(cfg, train=run), study_dir / "best.toml")
        summary["best"] = {"number": best.number, "val_accuracy": best.value, "params": best.params,
                           "run": best.user_attrs.get("run", "")}
        summary["files"]["best"] = "best.toml"
        summary["files"].update(_plots(study, study_dir))
    summary["versions"] = library_versions(extra=("optuna",))
    atomic_write_json(study_dir / "summary.json", summary)
    summary["files"]["summary"] = "summary.json"
    return {**summary, "rows": rows}


def _plots(study: optuna.Study, study_dir: Path) -> dict[str, str]:
    """The optimisation history and, from two complete trials on, the parameter importances."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    target = "validation accuracy"
    plots = (
        ("history", "optimization_history.png", lambda: vis.plot_optimization_history(study, target_name=target)),
        # fANOVA's random forest, seeded so that the same trials give the same figure.
        ("importances", "param_importances.png", lambda: vis.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target_name=target)),
    )
    written = {}
    for key, name, plot in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = plot()
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue  # importances need trials that differ in a setting every trial has
        fig = ax.figure
        try:
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            atomic_write(study_dir / name, lambda out, fig=fig: fig.savefig(out, format="png", dpi=100))
        finally:
            plt.close(fig)
        written[key] = name
    return written
