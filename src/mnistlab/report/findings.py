"""The takeaways: one plain sentence per finding, computed from a report's numbers; the first
thing on the page, and report.json's "takeaways".

    mnistlab compare runs/a runs/b    # compare_takeaways: the findings across runs
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistlab.data import NUM_CLASSES
from mnistlab.report.robustness import CHANCE, CORRUPTIONS, ROBUST_DROP


def percent(p: float, digits: int = 1) -> str:
    return f"{p * 100:.{digits}f} %"


def duration(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 90:
        return f"{s:.1f} s"
    return f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def _robustness_sentences(rob: dict[str, Any]) -> list[str]:
    held, fragile, worst = [], [], []
    for name, c in rob["corruptions"].items():
        corruption = CORRUPTIONS[name]
        signed = "±" if min(c["strengths"]) < 0 else ""
        if c["holds_to"]:
            held.append(f"{corruption.noun} {signed}{corruption.describe(c['holds_to']).lstrip('+')}")
        else:
            clean = c["accuracy"][c["strengths"].index(0)]
            smallest = min((abs(s) for s in c["strengths"] if s), default=0)
            failed = [corruption.describe(s) for s, a in zip(c["strengths"], c["accuracy"], strict=True)
                      if abs(s) == smallest and a < clean - ROBUST_DROP]
            fragile.append(f"{corruption.noun} ({' and '.join(failed)})")
        strongest = max(abs(s) for s in c["strengths"])
        acc, s = min((a, s) for s, a in zip(c["strengths"], c["accuracy"], strict=True) if abs(s) == strongest)
        worst.append((acc, name, s))
    drop = f"{ROBUST_DROP * 100:.0f} points"
    out = []
    if held:
        out.append(f"Stays within {drop} of its clean accuracy up to: {', '.join(held)}.")
    if fragile:
        out.append(f"Loses more than {drop} already at the smallest step tried of: {', '.join(fragile)}.")
    acc, name, s = min(worst)
    out.append(f"Worst corruption at its largest strength: {CORRUPTIONS[name].noun} "
               f"({CORRUPTIONS[name].describe(s)}), {percent(acc)} accuracy against "
               f"{percent(rob['clean_accuracy'])} clean (chance is {percent(CHANCE, 0)}).")
    return out


def takeaways(report: dict[str, Any]) -> list[str]:
    """One-sentence findings a person reads first, each computed from the report's numbers."""
    h, test, calibration = report["headline"], report["test"], report["calibration"]
    out = [f"It reads {percent(h['test_accuracy'], 2)} of the {h['test_images']:,} test digits right "
           f"and gets {h['test_errors']:,} wrong."]

    cm = np.array(test["confusion_matrix"])
    off = cm - np.diag(np.diag(cm))
    if off.sum():
        true, seen = np.unravel_index(np.argmax(off), off.shape)
        share = off[true, seen] / off.sum()
        out.append(f"Most confused pair: a {true} read as {seen} ({off[true, seen]} times, "
                   f"{percent(share, 0)} of all mistakes).")
        worst = min(test["per_class"], key=lambda r: r["f1"])
        out.append(f"Weakest digit: {worst['class']} (F1 {percent(worst['f1'], 2)}, recall "
                   f"{percent(worst['recall'], 2)}); strongest: "
                   f"{max(test['per_class'], key=lambda r: r['f1'])['class']}.")
        m = report["mistakes"]
        sure = m["over_90_percent_sure"]
        if sure:
            out.append(f"{sure:,} of the {m['count']:,} mistakes are made with more than 90 % confidence: "
                       "no confidence threshold below that would flag them.")
        else:
            out.append(f"None of the {m['count']:,} mistakes is made with more than 90 % confidence.")

    gap = calibration["mean_confidence"] - calibration["accuracy"]
    if abs(gap) < 0.01:
        verdict = "Confidence can be taken at face value"
    else:
        verdict = "Over-confident" if gap > 0 else "Under-confident"
    if calibration["fitted_on"]:
        how = f"with temperature {calibration['temperature']:g}, fitted on the {calibration['fitted_on']}"
    else:
        how = ("as trained: no temperature was fitted, the run kept no validation split" if calibration["recorded"]
               else "as trained: the run recorded no temperature")
    smoothing = (report.get("config") or {}).get("train", {}).get("label_smoothing") or 0
    if smoothing and gap < -0.01:
        # Smoothed targets put 1 - e + e/10 on the right class, and a model learns to say about that.
        how += (f"; label smoothing {smoothing:g} trains it to say about "
                f"{percent(1 - smoothing + smoothing / NUM_CLASSES, 0)}")
    out.append(f"{verdict}: average confidence {percent(calibration['mean_confidence'])} against "
               f"{percent(calibration['accuracy'])} accuracy, ECE {percent(calibration['ece'], 2)} ({how}).")

    history = report.get("history") or {}
    val = history.get("val_accuracy")
    if val and any(v is not None for v in val):
        best = int(np.nanargmax(np.array(val, dtype=float)))
        train_acc = (history.get("accuracy") or [None])[best]
        line = (f"Validation accuracy peaked at {percent(val[best], 2)} in epoch {best + 1} of {len(val)}"
                if len(val) > 1 else f"Validation accuracy after the one epoch: {percent(val[best], 2)}")
        if train_acc is not None and train_acc - val[best] > 0.01:
            line += f", {(train_acc - val[best]) * 100:.1f} points below training accuracy: some over-fitting"
        out.append(line + ".")
    elif history:
        out.append("Trained without a validation split: nothing measured over-fitting during training.")

    if report.get("robustness"):
        out += _robustness_sentences(report["robustness"])

    for f in report.get("folders") or []:
        out.append(f"On the {f['n']} real images in {f['path']}: {percent(f['accuracy'])} right "
                   f"(MNIST test: {percent(h['test_accuracy'])}).")
    if h["data_matches_run"] is False:
        out.append("Warning: the test data here differs from the data the run was trained with "
                   "(checksums below).")
    return out


def run_labels(reports: list[dict[str, Any]]) -> list[str]:
    names = [r["headline"]["run"] for r in reports]
    return names if len(set(names)) == len(names) else [r["headline"]["path"] for r in reports]


def compare_takeaways(reports: list[dict[str, Any]]) -> list[str]:
    """One-sentence findings across runs, computed from their reports."""
    labels = run_labels(reports)
    acc = [r["headline"]["test_accuracy"] for r in reports]
    order = np.argsort(acc)[::-1]
    best, second = int(order[0]), int(order[1])
    errors = [r["headline"]["test_errors"] for r in reports]
    out = [f"Most accurate: {labels[best]} at {percent(acc[best], 2)} ({errors[best]:,} errors), "
           f"{(acc[best] - acc[second]) * 100:.2f} points above {labels[second]} ({errors[second]:,} errors)."]
    n = reports[0]["test"]["n"]
    if all(r["test"]["n"] == n for r in reports):
        # Binomial standard error of a difference between two accuracies near these, on n images.
        se = np.sqrt(acc[best] * (1 - acc[best]) / n + acc[second] * (1 - acc[second]) / n)
        if acc[best] - acc[second] < 2 * se:
            out.append(f"That gap is within two standard errors ({2 * se * 100:.2f} points on {n:,} images): "
                       "as likely noise as a real difference.")
    f1 = np.array([[c["f1"] for c in r["test"]["per_class"]] for r in reports])
    spread = f1.max(axis=0) - f1.min(axis=0)
    digit = int(spread.argmax())
    out.append(f"The runs differ most on digit {digit}: F1 from {percent(f1[:, digit].min(), 2)} "
               f"({labels[int(f1[:, digit].argmin())]}) to {percent(f1[:, digit].max(), 2)} "
               f"({labels[int(f1[:, digit].argmax())]}).")
    ece = [r["calibration"]["ece"] for r in reports]
    out.append(f"Best calibrated: {labels[int(np.argmin(ece))]} (ECE {percent(min(ece), 2)}); "
               f"worst: {labels[int(np.argmax(ece))]} (ECE {percent(max(ece), 2)}).")
    robust = [(r["robustness"]["mean_corrupted_accuracy"], k) for k, r in enumerate(reports) if r["robustness"]]
    if len(robust) > 1:
        (lo, k_lo), (hi, k_hi) = min(robust), max(robust)
        out.append(f"Most robust: {labels[k_hi]}, {percent(hi)} mean accuracy under corruption, against "
                   f"{percent(lo)} for {labels[k_lo]}.")
    params = [(r["headline"]["params"], k) for k, r in enumerate(reports) if r["headline"]["params"]]
    if len(params) > 1:
        p, k = min(params)
        out.append(f"Smallest: {labels[k]} with {p:,} parameters ({percent(acc[k], 2)} accuracy).")
    return out
