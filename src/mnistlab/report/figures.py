"""The report's figures: learning curves, confusion matrix, reliability diagram, robustness
panels and per-digit F1, each a matplotlib `Figure` drawn with the object-oriented API (no pyplot,
no display) and turned into PNG bytes by `figure_png`.

    mnistlab report runs/<name>     # every figure on the page comes from here

Matplotlib is imported inside these functions, so `import mnistlab.report` stays light.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from mnistlab.data import NUM_CLASSES
from mnistlab.report.robustness import CHANCE, CORRUPTIONS

# Figures are drawn at DPI and shown at 96 CSS px per inch, so they stay sharp on 2x screens.
DPI = 160
COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777")


_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def figure_png(draw: Callable[..., Any], *args: Any) -> bytes:
    """draw(*args) -> a Figure, rendered to PNG bytes under the house style."""
    import matplotlib

    with matplotlib.rc_context(_STYLE):
        fig = draw(*args)
        return _png(fig)


def curves_figure(
    series: list[tuple[str, dict[str, list]]],
    kept_epoch: int | None = None,
    batches: dict[str, list] | None = None,
) -> Any:
    """Loss and accuracy per epoch: training solid, validation dashed; one colour per run.

    batches: one run's training curve within epochs (report.sections.read_batches). It is drawn
    instead of the training points per epoch, on an axis of epochs gone by, with validation at
    each epoch's end.
    """
    fig = _figure(10, 3.2)
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for k, (name, history) in enumerate(series):
            color = COLORS[k % len(COLORS)]
            epochs = history.get("epoch") or list(range(1, len(history.get(metric, [])) + 1))
            if batches and batches.get(metric):
                ax.plot(batches["epoch"], batches[metric], "-", lw=1.2, color=color,
                        label="training (every few batches)")
            for key, style, what in ((metric, "-", "training"), (f"val_{metric}", "--", "validation")):
                values = history.get(key)
                if values and not (batches and key == metric):
                    label = f"{name}: {what}" if len(series) > 1 else what
                    ax.plot(epochs, values, style, marker="o", ms=3, color=color, label=label)
        if kept_epoch and len(series) == 1:
            ax.axvline(kept_epoch, color="#6b7280", lw=0.8, ls=":", label=f"kept epoch {kept_epoch}")
        ax.set_xlabel("epochs of training" if batches else "epoch")
        ax.set_title(metric)
        if batches:
            ax.set_xlim(left=0)  # fractions of an epoch: a run of one has ticks at 0.2, 0.4, ...
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    return fig


def confusion_figure(cm: list[list[int]]) -> Any:
    from matplotlib.colors import LogNorm

    counts = np.array(cm)
    fig = _figure(5.4, 4.6)
    ax = fig.subplots()
    norm = LogNorm(vmin=1, vmax=max(int(counts.max()), 2))
    image = ax.imshow(np.ma.masked_equal(counts, 0), cmap="Blues", norm=norm)
    for (i, j), v in np.ndenumerate(counts):
        if v:  # an empty cell stays blank: the eye finds the few mistakes faster
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7.5,
                    color="white" if norm(v) > 0.6 else "#111827")
    ax.set_xticks(range(NUM_CLASSES))
    ax.set_yticks(range(NUM_CLASSES))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.grid(False)
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    fig.colorbar(image, ax=ax, shrink=0.8, label="images (log scale)")
    return fig


def reliability_figure(calibration: dict[str, Any]) -> Any:
    fig = _figure(5.4, 4.6)
    ax, counts = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", color="#9ca3af", lw=1, label="perfectly calibrated")
    series = [("as trained", calibration["reliability_as_trained"], calibration["ece_as_trained"], "#9ca3af")]
    if calibration["temperature"] != 1.0:
        series.append((f"temperature {calibration['temperature']:g}", calibration["reliability"],
                       calibration["ece"], COLORS[0]))
    else:
        series[0] = ("as trained (T = 1)", *series[0][1:3], COLORS[0])
    width = 1 / calibration["bins"]
    for k, (name, bins, ece, color) in enumerate(series):
        full = [b for b in bins if b["n"]]
        sizes = [8 + 60 * np.sqrt(b["n"] / max(c["n"] for c in full)) for b in full]
        ax.plot([b["confidence"] for b in full], [b["accuracy"] for b in full], color=color, lw=1.2)
        ax.scatter([b["confidence"] for b in full], [b["accuracy"] for b in full], s=sizes, color=color,
                   zorder=3, label=f"{name}: ECE {ece * 100:.2f} %")
        offset = (k - (len(series) - 1) / 2) * width / len(series)
        counts.bar([b["low"] + width / 2 + offset for b in bins], [b["n"] for b in bins],
                   width=width / len(series), color=color, log=True)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title("Reliability: accuracy of the answers given with each confidence")
    ax.legend(fontsize=8, loc="lower right")  # the corner a reliability curve seldom reaches
    counts.set_xlabel("confidence of the answer")
    counts.set_ylabel("images")
    return fig


def robustness_figure(series: list[tuple[str, dict[str, Any]]]) -> Any:
    """One panel per corruption, accuracy against strength; one colour per run."""
    names = list(series[0][1]["corruptions"])
    fig = _figure(11, 5.6)
    axes = fig.subplots(2, 4)
    for ax, name in zip(axes.flat, names, strict=False):
        for k, (label, rob) in enumerate(series):
            c = rob["corruptions"][name]
            ax.plot(c["strengths"], [a * 100 for a in c["accuracy"]], marker="o", ms=3,
                    color=COLORS[k % len(COLORS)], label=label)
        ax.axhline(CHANCE * 100, ls=":", color="#9ca3af", lw=1)
        ax.set_title(CORRUPTIONS[name].label if name in CORRUPTIONS else name)
        ax.set_xlabel(series[0][1]["corruptions"][name]["unit"])
        ax.set_ylim(0, 102)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy, %")
    legend = axes.flat[-1]
    legend.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if len(series) > 1:
        legend.legend(handles, labels, loc="center", fontsize=9)
    else:
        legend.text(0.05, 0.5, f"{series[0][1]['images']:,} test images\nseeded subset (seed {series[0][1]['seed']})"
                    "\n\ndotted line: chance (10 %)", va="center", fontsize=9, color="#374151")
    return fig


def f1_figure(series: list[tuple[str, list[dict[str, Any]]]]) -> Any:
    fig = _figure(10, 3.4)
    ax = fig.subplots()
    width = 0.8 / len(series)
    low = min(r["f1"] for _, rows in series for r in rows)
    for k, (name, rows) in enumerate(series):
        xs = [r["class"] - 0.4 + width * (k + 0.5) for r in rows]
        ax.bar(xs, [r["f1"] * 100 for r in rows], width=width, color=COLORS[k % len(COLORS)], label=name)
    floor = max(0.0, np.floor(low * 100 - 1))
    ax.set_ylim(floor, 100)
    ax.set_xticks(range(NUM_CLASSES))
    ax.set_xlabel("digit")
    ax.set_ylabel(f"F1, % (axis from {floor:g})")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncols=min(len(series), 6), fontsize=8)
    return fig
