"""Accuracy on real handwriting: our MNIST-faithful preprocessing against the naive one.

    python benchmarks/realworld.py RUN|reader [DIR] [--min-confidence 0.5] [--sheet sheet.png]

DIR (default ../shared/data/realworld) holds labelled images: an `index.csv` (columns file and
label, file relative to DIR) or, per set folder, a `labels.csv` (file, label), each read by
mnistlab.data.folders.labelled_images. An image's folder is its set, the set name's first word
its kind. Each image is read twice with the run's model: through mnistlab's preprocessing
(`mnistlab predict`), and through the naive recipe most MNIST demos use (grey, resize to 28x28,
invert if the mean is bright). Prints accuracy overall, per
kind and per set, how the "unsure" threshold splits right from wrong answers, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

from mnistlab.data import decode_image  # noqa: E402
from mnistlab.data.folders import labelled_images, labels_layout  # noqa: E402
from mnistlab.predict import contact_sheet, load_predictor  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_DIRS = (SHARED_DATA / "realworld", SHARED_DATA / "realworld2")


def labelled_rows(root: Path) -> list[dict]:
    """Rows {set, kind, file, label}: DIR's own labelled images (its index.csv) if it has them, else
    those of each set folder in it. mnistlab.data.folders.labelled_images reads each folder."""
    if labels_layout(root) is not None:
        found = labelled_images(root).images
    else:
        sets = sorted(sub for sub in root.iterdir() if sub.is_dir() and labels_layout(sub) is not None)
        found = [pair for folder in sets for pair in labelled_images(folder).images]
    # The set is the image's folder (as index.csv's set column gives it), its kind the first word.
    return [{"set": path.parent.name, "kind": path.parent.name.split("_")[0], "file": str(path), "label": label}
            for path, label in found]


def naive(path: str) -> np.ndarray:
    """The demo recipe: grey levels resized to 28x28, inverted when the picture is mostly bright."""
    from PIL import Image

    grey = Image.fromarray(np.uint8(decode_image(path) * 255)).resize((28, 28), Image.BILINEAR)
    x = np.asarray(grey, dtype=np.uint8)
    return 255 - x if x.mean() > 127 else x


def accuracy_table(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    return {
        name: {"n": len(g), "ours": float(np.mean([r["ours"] == r["label"] for r in g])),
               "naive": float(np.mean([r["naive"] == r["label"] for r in g]))}
        for name, g in sorted(groups.items())
    }


def measure(predictor, root: Path, sheet: str | None) -> dict:
    """One model on one folder: rows with our answer and the naive recipe's, and their tables."""
    items = labelled_rows(root)
    files = [r["file"] for r in items]
    ours = predictor.predict(files)
    naive_digits = predictor.probabilities(np.stack([naive(f) for f in files])).argmax(axis=1)
    rows = [{**r, "ours": p.digit, "status": p.status, "confidence": p.confidence,
             "naive": int(n)} for r, p, n in zip(items, ours, naive_digits, strict=True)]
    if sheet:
        contact_sheet(files, ours, sheet)
    right = [r for r in rows if r["ours"] == r["label"]]
    wrong = [r for r in rows if r["ours"] != r["label"]]
    return {
        "overall": accuracy_table([{**r, "all": "all"} for r in rows], "all")["all"],
        "kinds": accuracy_table(rows, "kind"),
        "sets": accuracy_table(rows, "set"),
        "unsure": {"wrong_flagged_unsure": sum(r["status"] != "ok" for r in wrong), "wrong": len(wrong),
                   "right_flagged_unsure": sum(r["status"] != "ok" for r in right), "right": len(right)},
        "wrong": [{"file": str(Path(r["file"]).relative_to(root)), "label": r["label"], "read": r["ours"],
                   "confidence": r["confidence"], "status": r["status"]} for r in wrong],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["reader"],
                        help="run folders (their model.onnx when they have one), or `reader` for the reader shipped "
                        "with mnistlab (default)")
    parser.add_argument("--dir", action="append", help="a folder of labelled real images (repeatable; default: both "
                        "development sets in ../shared/data)")
    parser.add_argument("--min-confidence", type=float, default=None, help="threshold for 'unsure'")
    parser.add_argument("--sheet", help="write contact sheets PREFIX-<model>-<dir>.png (original | seen | answer)")
    args = parser.parse_args()
    roots = [Path(d) for d in args.dir] if args.dir else [d for d in DEFAULT_DIRS if d.is_dir()]
    if not roots or not all(root.is_dir() for root in roots):
        sys.exit(f"error: no folder of labelled images at {', '.join(map(str, roots or DEFAULT_DIRS))}.")

    info = header()
    results: dict = {}
    for model in args.models:
        predictor = load_predictor(None if model == "reader" else model)
        if args.min_confidence is not None:
            predictor.min_confidence = args.min_confidence
        results[model] = {"temperature": predictor.temperature, "min_confidence": predictor.min_confidence}
        for root in roots:
            sheet = f"{args.sheet}-{Path(model).name}-{root.name}.png" if args.sheet else None
            results[model][root.name] = measure(predictor, root, sheet)

    names = [Path(m).name for m in args.models]
    for root in roots:
        first = results[args.models[0]][root.name]
        print(f"\n{root} ({first['overall']['n']} images, {len(first['sets'])} sets): accuracy through "
              f"mnistlab's preprocessing; naive = {names[0]} on the demo recipe")
        print(f"{'':<52}{'n':>5}" + "".join(f"{n[:14]:>15}" for n in names) + f"{'naive':>9}")
        lines = [("all", first["overall"], [results[m][root.name]["overall"] for m in args.models])]
        for title in ("kinds", "sets"):
            lines += [(f"{title[:-1]} {k}", t, [results[m][root.name][title][k] for m in args.models])
                      for k, t in first[title].items()]
        for label, t, per_model in lines:
            print(f"{label[:51]:<52}{t['n']:>5}" + "".join(f"{r['ours'] * 100:>14.1f}%" for r in per_model)
                  + f"{t['naive'] * 100:>8.1f}%")
    for model, name in zip(args.models, names, strict=True):
        r = results[model]
        print(f"\n{name}: temperature {r['temperature']:.3f}, unsure below {r['min_confidence']:.2f}")
        for root in roots:
            u, wrong = r[root.name]["unsure"], r[root.name]["wrong"]
            print(f"  {root.name}: wrong answers marked unsure {u['wrong_flagged_unsure']}/{u['wrong']}, "
                  f"right answers marked unsure {u['right_flagged_unsure']}/{u['right']}")
            for w in wrong:
                seen = "no digit" if w["confidence"] is None else format(w["confidence"], ".0%")
                print(f"    wrong: {w['file']} label {w['label']} read {w['read']} ({seen}, {w['status']})")
    print(json.dumps({"benchmark": "realworld", "dirs": [str(r) for r in roots],
                      "machine": {k: v for k, v in info.items() if k != "versions"}, "versions": info["versions"],
                      "models": results}))


if __name__ == "__main__":
    main()
