"""The report's HTML: one self-contained page per run or comparison. Figures and digits are
embedded as PNG data URLs and the page has no script and fetches nothing, so it opens offline and
travels as one file.

    mnistlab report runs/<name> --out page.html
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.backends import DISTRIBUTIONS
from mnistlab.data import IMAGE_SIZE
from mnistlab.report.figures import (
    DPI,
    confusion_figure,
    curves_figure,
    f1_figure,
    figure_png,
    reliability_figure,
    robustness_figure,
)
from mnistlab.report.findings import duration, percent, run_labels
from mnistlab.report.robustness import CHANCE, CORRUPTIONS
from mnistlab.report.sections import GALLERY_SIZE


@dataclass
class Pictures:
    """The pixels a page shows beside the numbers: none of it goes into the JSON."""

    mistakes: np.ndarray = field(default_factory=lambda: np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
    examples: dict[str, np.ndarray] = field(default_factory=dict)  # corruption -> one image per strength
    folders: list[np.ndarray] = field(default_factory=list)  # per folder, what the model saw of each mistake


_CSS = """
:root { --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --soft: #f9fafb; --accent: #2563eb; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); max-width: 1120px; margin: 0 auto; padding: 24px 20px 60px; }
h1 { font-size: 1.7em; margin: 0; } h1 small { color: var(--muted); font-weight: 400; font-size: .6em; }
h2 { font-size: 1.25em; margin: 2.2em 0 .6em; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
nav { margin: 8px 0 18px; font-size: .9em; } nav a { margin-right: 14px; color: var(--accent); }
.muted, figcaption, .note { color: var(--muted); font-size: .9em; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(165px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--soft); }
.card .value { font-size: 1.45em; font-weight: 650; } .card .key { color: var(--muted); font-size: .82em; }
.card .sub { color: var(--muted); font-size: .8em; } .card .value.small { font-size: 1.05em; padding: 4px 0 2px; }
.takeaways { font-size: 1.02em; padding-left: 1.2em; } .takeaways li { margin: 5px 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: right; }
th { font-weight: 600; background: var(--soft); white-space: nowrap; } td.left, th.left { text-align: left; }
tr.worst td { background: #fef2f2; }
.scroll { overflow-x: auto; } #runs td, #runs th { white-space: nowrap; font-size: .92em; padding: 3px 8px; }
.row { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.row > div { flex: 1 1 340px; }
figure { margin: 0; } img.fig { max-width: 100%; height: auto; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 12px 8px; }
.tile .top3 span { white-space: nowrap; }
.tile { text-align: center; font-size: .78em; line-height: 1.3; }
.tile img, .sweep img { image-rendering: pixelated; display: block; margin: 0 auto 3px; background: #000; }
.tile b { font-size: 1.15em; }
.sweep td { text-align: center; font-size: .8em; padding: 4px 6px; }
.sweep th.left { white-space: nowrap; }
.details td { text-align: left; font-size: .88em; } \
.details td:first-child { color: var(--muted); white-space: nowrap; }
code { font-size: .92em; }
.warn { color: #b91c1c; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str, cls: str = "fig", width: int | None = None) -> str:
    """An <img> carrying its PNG; a figure's width is its size at 96 CSS px per inch."""
    if width is None:
        from PIL import Image

        width = round(Image.open(io.BytesIO(png)).width * 96 / DPI)
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{cls}" src="data:image/png;base64,{data}" width="{width}" alt="{_e(alt)}">'


def _digit_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _digit(image: np.ndarray, alt: str, size: int = 56) -> str:
    data = base64.b64encode(_digit_png(image)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" width="{size}" height="{size}" alt="{_e(alt)}">'


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _card(key: str, value: str, sub: str = "", ident: str = "") -> str:
    attr = f' id="{ident}"' if ident else ""
    sub_html = f'<div class="sub">{_e(sub)}</div>' if sub else ""
    size = " small" if len(value) > 10 else ""
    return (f'<div class="card"{attr}><div class="key">{_e(key)}</div><div class="value{size}">{_e(value)}</div>'
            f"{sub_html}</div>")


def _epochs_text(h: dict[str, Any]) -> tuple[str, str]:
    run, configured, kept = h.get("epochs_run"), h.get("epochs_configured"), h.get("kept_epoch")
    if h.get("members"):
        return f"{h['members']} members", f"ensemble, {configured} epochs each"
    if run is None:
        return "?", ""
    sub = f"of {configured} planned" if configured and configured != run else ""
    if kept and kept != run:
        sub = (sub + ", " if sub else "") + f"kept epoch {kept}"
    return f"{run}", sub


def _model_text(h: dict[str, Any]) -> str:
    """The preset name, with its architecture when that says more (fast (cnn), but plain mlp)."""
    name, arch = h.get("model") or "?", h.get("arch")
    return f"{name} ({arch})" if arch and arch != name else name


def _versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def _headline_html(report: dict[str, Any]) -> str:
    h, rob = report["headline"], report["robustness"]
    epochs, epochs_sub = _epochs_text(h)
    model = _model_text(h)
    params = f"{h['params']:,} parameters" if h.get("params") is not None else ""
    if h["temperature_fitted_on"]:
        fitted = "fitted on the " + h["temperature_fitted_on"]
    else:
        fitted = "not fitted (no validation split)" if report["calibration"]["recorded"] else "none recorded"
    cards = [
        _card("test accuracy", percent(h["test_accuracy"], 2), f"{h['test_errors']:,} wrong of {h['test_images']:,}",
              "test-accuracy"),
        _card("model", model, params, "model"),
        _card("epochs", epochs, epochs_sub),
        _card("training time", duration(h.get("train_seconds")),
              f"on {h['train_images']:,} images" if h.get("train_images") else ""),
        _card("calibration temperature", f"{h['temperature']:g}", fitted, "temperature"),
        _card("calibration error (ECE)", percent(h["ece"], 2),
              "with the temperature" if h["temperature_fitted_on"] else "as trained"),
        _card("macro F1", percent(h["macro_f1"], 2), "mean over the 10 digits"),
    ]
    if rob:
        cards.append(_card("accuracy under corruption", percent(rob["mean_corrupted_accuracy"]),
                           f"mean of {sum(len(c['strengths']) - 1 for c in rob['corruptions'].values())} settings"))
    for f in report["folders"]:
        cards.append(_card(f"real images: {Path(f['path']).name}", percent(f["accuracy"]), f"{f['n']} images"))
    same = {True: "same as at training", False: "NOT the data of training", None: "not recorded at training"}
    cards.append(_card("test data sha256", h["data_sha256"]["x_test"][:12] + "…", same[h["data_matches_run"]]))
    v = h["versions"] or h["versions_now"]
    machine = h.get("machine") or {}
    # Runs from before the backend was recorded trained on TensorFlow, the only one then.
    recorded_tf = any(d in v for d in DISTRIBUTIONS["tensorflow"])
    backend = machine.get("backend") or ("tensorflow" if recorded_tf else None)
    version = next((v[d] for d in DISTRIBUTIONS.get(backend or "", ()) if d in v), None)
    on = f" on {machine['device']}" if machine.get("device") else ""
    cards.append(_card("trained with", f"Keras {v.get('keras', '?')}",
                       f"{backend} {version or '?'}{on}, Python {v.get('python', '?')}" if backend else ""))
    items = "".join(f"<li>{_e(t)}</li>" for t in report["takeaways"])
    return (f'<section id="headline"><div class="cards">{"".join(cards)}</div>\n'
            f'<h2>What the numbers say</h2><ul class="takeaways">{items}</ul></section>')


def _details_html(report: dict[str, Any]) -> str:
    h = report["headline"]
    sha = h["data_sha256"]
    match = {True: "same data as at training", False: "DIFFERS from the data at training",
             None: "the run recorded no checksum"}[h["data_matches_run"]]
    rows = [
        ("run folder", h["path"]),
        ("trained with", h.get("command") or "?"),
        ("finished", h.get("finished") or "?"),
        ("seed", h.get("seed")),
        ("test accuracy recorded at training",
         f"{percent(h['recorded_test_accuracy'], 2)} on {h['recorded_test_images']:,} images"
         if h.get("recorded_test_accuracy") is not None else "?"),
        ("data", f"{h['data_source']}: {match}"),
        *((f"sha256 {k}", v) for k, v in sha.items()),
        ("versions at training", _versions_text(h["versions"]) or "?"),
        ("versions now", _versions_text(h["versions_now"])),
        ("report built in", ", ".join(f"{k} {v:g} s" for k, v in report["timings"].items())),
    ]
    body = "".join(f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in rows)
    return f'<h2 id="details">Details</h2><table class="details">{body}</table>'


def _per_class_html(test: dict[str, Any]) -> str:
    cm = np.array(test["confusion_matrix"])
    worst = min(test["per_class"], key=lambda r: r["f1"])["class"]
    rows = []
    for r in test["per_class"]:
        c = r["class"]
        off = cm[c].copy()
        off[c] = 0
        confused = f"{int(off.argmax())} ({off.max()}×)" if off.max() else "–"
        cls = ' class="worst"' if c == worst else ""
        rows.append(f"<tr{cls}><td>{c}</td><td>{r['precision'] * 100:.2f}</td><td>{r['recall'] * 100:.2f}</td>"
                    f"<td>{r['f1'] * 100:.2f}</td><td>{r['support']:,}</td><td>{_e(confused)}</td></tr>")
    return ('<table id="per-class"><thead><tr><th>digit</th><th>precision %</th><th>recall %</th><th>F1 %</th>'
            f'<th>images</th><th>most often read as</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            '<p class="note">Precision: of the images read as this digit, the share that are it. Recall: of the '
            'images of this digit, the share read right. The weakest digit is shaded.</p>')


def _gallery_html(report: dict[str, Any], pictures: Pictures) -> str:
    m = report["mistakes"]
    if not m["shown"]:
        return '<p>No mistakes on the test set.</p>'
    tiles = []
    for k, item in enumerate(m["shown"]):
        # "5 (4 %)": a digit and its share side by side ("5 4%") read as 54 %. Lines break between
        # the three, never inside one.
        top3 = " · ".join(f"<span>{_e(t['digit'])} ({t['confidence'] * 100:.0f} %)</span>" for t in item["top3"])
        alt = f"test image {item['index']}: a {item['label']} read as {item['predicted']}"
        picture = _digit(pictures.mistakes[k], alt) if k < len(pictures.mistakes) else ""
        tiles.append(f'<div class="tile">{picture}<b>{item["label"]} → {item["predicted"]}</b>'
                     f'<br><span class="top3">{top3}</span><br><span class="muted">#{item["index"]}</span></div>')
    return (f'<p class="note">The {len(m["shown"])} most confident of the {m["count"]} mistakes, as the model saw '
            'them: <b>true → read as</b>, then the top 3 with calibrated confidence, then the test index.</p>'
            f'<div class="gallery">{"".join(tiles)}</div>')


def _sweep_table_html(rob: dict[str, Any], pictures: Pictures) -> str:
    clean = rob["clean_accuracy"]
    rows = []
    for name, c in rob["corruptions"].items():
        cells = []
        examples = pictures.examples.get(name)
        for k, (s, a) in enumerate(zip(c["strengths"], c["accuracy"], strict=True)):
            # Green at the clean accuracy, red at chance.
            hue = 120 * float(np.clip((a - CHANCE) / max(clean - CHANCE, 1e-9), 0, 1))
            label = CORRUPTIONS[name].describe(s) if name in CORRUPTIONS else f"{s:g}"
            picture = _digit(examples[k], f"{c['label']} {label}", 42) if examples is not None else ""
            cells.append(f'<td style="background: hsl({hue:.0f} 70% 90%)">{picture}{_e(label)}<br>'
                         f"<b>{a * 100:.1f}</b></td>")
        rows.append(f'<tr><th class="left">{_e(c["label"])}</th>{"".join(cells)}</tr>')
    return (f'<table class="sweep">{"".join(rows)}</table><p class="note">Test image '
            f'#{rob["example_index"]} at each strength, with the accuracy in % over all {rob["images"]:,} images '
            'of the subset; green is the accuracy on clean digits, red is chance.</p>')


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return Path(path).name


def _folders_html(report: dict[str, Any], pictures: Pictures) -> str:
    parts = []
    for k, f in enumerate(report["folders"]):
        seen = pictures.folders[k] if k < len(pictures.folders) else []
        root = Path(f["path"])
        tiles = "".join(
            f'<div class="tile">{_digit(image, _relative(m["path"], root))}<b>{m["label"]} → {m["predicted"]}</b>'
            f'<br>{m["confidence"] * 100:.0f}%<br><span class="muted">{_e(_relative(m["path"], root))}</span></div>'
            for m, image in zip(f["mistakes"][:GALLERY_SIZE], seen, strict=False)
        )
        skipped = f' {len(f["skipped"])} could not be read and are left out.' if f["skipped"] else ""
        parts.append(f'<h3>{_e(f["path"])}</h3><p>{percent(f["accuracy"])} of {f["n"]} images read right; '
                     f'{len(f["mistakes"])} wrong.{_e(skipped)}</p>'
                     + (f'<div class="gallery">{tiles}</div>' if tiles else ""))
    return "".join(parts)


# Why a training curve can sit below the validation one: Keras logs the training figures as they
# ran during the epoch, the validation ones with the weights at its end.
_CURVES_NOTE = ("Training loss and accuracy are averages over each epoch while the weights were still "
                "changing (and with any augmentation); validation is measured once, at the epoch's end.")


_BATCH_CURVES_NOTE = ("Training loss and accuracy are means over every few batches (a few dozen points an "
                      "epoch), while the weights were changing and with any augmentation; validation is measured "
                      "at each epoch's end, with the weights of that moment.")


def _calibration_table(cal: dict[str, Any]) -> str:
    raw_confidence = float(np.average([b["confidence"] or 0 for b in cal["reliability_as_trained"]],
                                      weights=[b["n"] for b in cal["reliability_as_trained"]]))
    rows = [("ECE", cal["ece_as_trained"], cal["ece"]), ("mean confidence", raw_confidence, cal["mean_confidence"]),
            ("accuracy", cal["accuracy"], cal["accuracy"])]
    both = cal["temperature"] != 1.0
    head = f'<th>as trained</th><th>with T = {cal["temperature"]:g}</th>' if both else "<th>as trained</th>"
    body = "".join(f'<tr><td class="left">{k}</td><td>{percent(a, 2)}</td>'
                   + (f"<td>{percent(b, 2)}</td>" if both else "")
                   + "</tr>" for k, a, b in rows)
    return f'<table id="calibration-table"><tr><th class="left"></th>{head}</tr>{body}</table>'


def render_html(report: dict[str, Any], pictures: Pictures | None = None) -> str:
    """The report page for build_report's numbers (digit pictures only where `pictures` has them)."""
    pictures = pictures or Pictures()
    h = report["headline"]
    sections = [("headline", "Summary")]
    body = [f'<h1>{_e(h["run"])} <small>mnistlab report, {_e(report["created"])}</small></h1>']
    parts = [_headline_html(report)]

    history, batches = report["history"], report.get("batches")  # reports before batches.csv have none
    if history and (batches or len(history.get("loss", [])) > 1):
        kept = h.get("kept_epoch")
        png = figure_png(curves_figure, [(h["run"], history)], kept if kept != len(history["loss"]) else None,
                         batches)
        what = "loss and accuracy every few batches" if batches else "loss and accuracy per epoch"
        parts.append('<h2 id="curves">Learning curves</h2>' + _img(png, what)
                     + f'<p class="note">{_BATCH_CURVES_NOTE if batches else _CURVES_NOTE}</p>')
        sections.append(("curves", "Learning curves"))
    elif history:
        words = {"accuracy": "training accuracy", "loss": "training loss", "val_accuracy": "validation accuracy",
                 "val_loss": "validation loss"}
        last = ", ".join(f"{words[k]} {percent(v[0], 2) if k.endswith('accuracy') else f'{v[0]:.4f}'}"
                         for k, v in history.items() if k in words and v[0] is not None)
        parts.append(f'<h2 id="curves">Learning curves</h2><p>One epoch, so no curve to draw: {_e(last)}.</p>')
        sections.append(("curves", "Learning curves"))

    cm_png = figure_png(confusion_figure, report["test"]["confusion_matrix"])
    parts.append(f'<h2 id="errors">Test-set errors ({h["test_images"]:,} images)</h2><div class="row"><figure>'
                 + _img(cm_png, "confusion matrix: rows true digit, columns predicted, counts")
                 + "<figcaption>Rows: the true digit; columns: what it was read as.</figcaption></figure>"
                 + f"<div>{_per_class_html(report['test'])}</div></div>")
    sections.append(("errors", "Errors"))

    parts.append('<h2 id="mistakes">Most confident mistakes</h2>' + _gallery_html(report, pictures))
    sections.append(("mistakes", "Mistakes"))

    cal = report["calibration"]
    if cal["fitted_on"]:
        stated = f"Temperature {cal['temperature']:g}, fitted on the {cal['fitted_on']}, is applied."
    elif cal["recorded"]:
        stated = "No temperature was fitted (the run kept no validation split): T = 1."
    else:
        stated = "The run recorded no temperature: T = 1."
    parts.append('<h2 id="calibration">Calibration</h2><div class="row"><figure>'
                 + _img(figure_png(reliability_figure, cal), "reliability diagram")
                 + f'</figure><div><p>{_e(stated)}</p>{_calibration_table(cal)}'
                 '<p class="note">Each dot is a confidence bin (area: images in it). Dots on '
                 'the diagonal: when the model says 80 %, it is right 80 % of the time. Below the diagonal it '
                 'is over-confident, above it under-confident. ECE: the mean gap, weighted by images '
                 f'({cal["bins"]} bins).</p></div></div>')
    sections.append(("calibration", "Calibration"))

    rob = report["robustness"]
    if rob:
        png = figure_png(robustness_figure, [(h["run"], rob)])
        parts.append('<h2 id="robustness">Robustness</h2>'
                     + f'<p>Accuracy as the test digits are moved away from what MNIST looks like; the '
                       f'{rob["images"]:,} images are a seeded subset (seed {rob["seed"]}) of the test set, '
                       f'{percent(rob["clean_accuracy"], 2)} right when clean.</p>'
                     + _img(png, "accuracy against corruption strength, one panel per corruption")
                     + _sweep_table_html(rob, pictures))
        sections.append(("robustness", "Robustness"))

    if report["folders"]:
        parts.append('<h2 id="folders">Real images</h2>' + _folders_html(report, pictures))
        sections.append(("folders", "Real images"))

    parts.append(_details_html(report))
    sections.append(("details", "Details"))
    nav = "".join(f'<a href="#{k}">{_e(v)}</a>' for k, v in sections)
    body += [f"<nav>{nav}</nav>", *parts]
    return _page(f"mnistlab report: {h['run']}", "\n".join(body))


def _compare_table_html(reports: list[dict[str, Any]], labels: list[str]) -> str:
    columns = ["run", "model", "parameters", "test accuracy", "errors", "macro F1", "ECE", "temperature",
               "epochs", "training", "corrupted"]
    best = max(r["headline"]["test_accuracy"] for r in reports)
    rows = []
    for label, r in zip(labels, reports, strict=True):
        h, rob = r["headline"], r["robustness"]
        acc = percent(h["test_accuracy"], 2)
        cells = [
            _e(label),
            _e(_model_text(h)),
            f"{h['params']:,}" if h.get("params") is not None else "?",
            f"<b>{acc}</b>" if h["test_accuracy"] == best else acc,
            f"{h['test_errors']:,}",
            percent(h["macro_f1"], 2),
            percent(h["ece"], 2),
            f"{h['temperature']:g}",
            _e(" ".join(_epochs_text(h)).strip()),
            duration(h.get("train_seconds")),
            percent(rob["mean_corrupted_accuracy"]) if rob else "–",
        ]
        rows.append("<tr>" + "".join(f'<td{" class=left" if k < 2 else ""}>{c}</td>' for k, c in enumerate(cells))
                    + "</tr>")
    head = "".join(f'<th{" class=left" if k < 2 else ""}>{_e(c)}</th>' for k, c in enumerate(columns))
    return (f'<div class="scroll"><table id="runs"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def render_compare_html(comparison: dict[str, Any]) -> str:
    """The page for compare_runs' numbers."""
    reports = comparison["runs"]
    labels = run_labels(reports)
    parts = [f"<h1>Comparing {len(reports)} runs <small>mnistlab compare, {_e(comparison['created'])}</small></h1>",
             '<section id="headline">' + _compare_table_html(reports, labels)
             + '<p class="note">ECE: calibration error with each run\'s own temperature. Training: wall-clock '
               "time of the fit, on the machine each run was trained on. Corrupted: mean accuracy over the "
               "robustness sweep's corrupted settings.</p>"
             + '<h2>What the numbers say</h2><ul class="takeaways">'
             + "".join(f"<li>{_e(t)}</li>" for t in comparison["takeaways"]) + "</ul></section>"]
    histories = [(label, r["history"]) for label, r in zip(labels, reports, strict=True) if r["history"]]
    if histories:
        parts.append('<h2 id="curves">Learning curves</h2>'
                     + _img(figure_png(curves_figure, histories), "learning curves of every run")
                     + f'<p class="note">Solid: training; dashed: validation. {_CURVES_NOTE}</p>')
    parts.append('<h2 id="f1">Per-digit F1</h2>'
                 + _img(figure_png(f1_figure, [(lab, r["test"]["per_class"])
                                               for lab, r in zip(labels, reports, strict=True)]),
                        "F1 per digit, one bar per run"))
    robust = [(lab, r["robustness"]) for lab, r in zip(labels, reports, strict=True) if r["robustness"]]
    if robust:
        parts.append('<h2 id="robustness">Robustness</h2>'
                     + _img(figure_png(robustness_figure, robust), "accuracy under each corruption, one line per run")
                     + f'<p class="note">{robust[0][1]["images"]:,} test images, the same seeded subset for every '
                       "run; dotted line: chance.</p>")
    rows = "".join(f"<tr><td>{_e(label)}</td><td><code>{_e(r['headline']['path'])}</code></td>"
                   f"<td><code>{_e(r['headline'].get('command') or '?')}</code></td></tr>"
                   for label, r in zip(labels, reports, strict=True))
    parts.append(f'<h2 id="details">Details</h2><table class="details">{rows}</table>')
    return _page(f"mnistlab compare: {', '.join(labels)}", "\n".join(parts))
