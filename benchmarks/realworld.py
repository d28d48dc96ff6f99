"""Accuracy on real handwriting: our MNIST-faithful preprocessing against the naive one.

    python benchmarks/realworld.py RUN [DIR] [--min-confidence 0.5] [--sheet sheet.png]

DIR (default ../shared/data/realworld) holds labelled images: an `index.csv` (columns set, kind,
file, label; file relative to DIR) or, per set folder, a `labels.csv` (file, label; the folder
is the set, its name's first word the kind). Each image is read twice with the run's model:
through mnistlab's preprocessing (`mnistlab predict`), and through the naive recipe most MNIST
demos use (grey, resize to 28x28, invert if the mean is bright). Prints accuracy overall, per
kind and per set, how the "unsure" threshold splits right from wrong answers, and one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

from mnistlab.data import decode_image  # noqa: E402
from mnistlab.predict import Predictor, contact_sheet  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realworld"


def labelled_images(root: Path) -> list[dict[str, str]]:
    """Rows {set, kind, file (absolute), label} from index.csv, else from each set's labels.csv."""
    index = root / "index.csv"
    if index.is_file():
        with index.open(newline="", encoding="utf-8") as f:
            return [{"set": r["set"], "kind": r["kind"], "file": str(root / r["file"]), "label": r["label"]}
                    for r in csv.DictReader(f)]
    rows = []
    for labels in sorted(root.glob("*/labels.csv")):
        folder = labels.parent
        with labels.open(newline="", encoding="utf-8") as f:
            rows += [{"set": folder.name, "kind": folder.name.split("_")[0], "file": str(folder / r["file"]),
                      "label": r["label"]} for r in csv.DictReader(f)]
    return rows


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder written by `mnistlab train`")
    parser.add_argument("dir", nargs="?", default=str(DEFAULT_DIR), help="labelled real images")
    parser.add_argument("--min-confidence", type=float, default=None, help="threshold for 'unsure'")
    parser.add_argument("--sheet", help="write a contact sheet (original | what the model saw | answer)")
    args = parser.parse_args()
    root = Path(args.dir)
    if not root.is_dir():
        sys.exit(f"error: {root} is not a folder of labelled images.")

    info = header()
    items = labelled_images(root)
    predictor = Predictor.from_run(args.run)
    if args.min_confidence is not None:
        predictor.min_confidence = args.min_confidence
    files = [r["file"] for r in items]
    ours = predictor.predict(files)
    naive_digits = predictor.probabilities(np.stack([naive(f) for f in files])).argmax(axis=1)
    rows = [{**r, "label": int(r["label"]), "ours": p.digit, "status": p.status, "confidence": p.confidence,
             "naive": int(n)} for r, p, n in zip(items, ours, naive_digits, strict=True)]
    if args.sheet:
        contact_sheet(files, ours, args.sheet)

    overall = accuracy_table([{**r, "all": "all"} for r in rows], "all")["all"]
    kinds = accuracy_table(rows, "kind")
    sets = accuracy_table(rows, "set")
    right = [r for r in rows if r["ours"] == r["label"]]
    wrong = [r for r in rows if r["ours"] != r["label"]]
    flagged = {"wrong_flagged_unsure": sum(r["status"] != "ok" for r in wrong), "wrong": len(wrong),
               "right_flagged_unsure": sum(r["status"] != "ok" for r in right), "right": len(right)}

    print(f"{len(rows)} images from {len(sets)} sets in {root}; model {args.run} "
          f"(temperature {predictor.temperature:.3f}, unsure below {predictor.min_confidence:.2f})\n")
    print(f"{'':<44}{'n':>5}{'ours':>9}{'naive':>9}")
    print(f"{'all':<44}{overall['n']:>5}{overall['ours'] * 100:>8.1f}%{overall['naive'] * 100:>8.1f}%")
    for title, table in (("kind", kinds), ("set", sets)):
        for name, t in table.items():
            print(f"{title + ' ' + name:<44}{t['n']:>5}{t['ours'] * 100:>8.1f}%{t['naive'] * 100:>8.1f}%")
    print(f"\nwrong answers marked unsure: {flagged['wrong_flagged_unsure']}/{flagged['wrong']}; "
          f"right answers marked unsure: {flagged['right_flagged_unsure']}/{flagged['right']}")
    for r in wrong:
        print(f"  wrong: {Path(r['file']).relative_to(root) if root in Path(r['file']).parents else r['file']} "
              f"label {r['label']} read {r['ours']} ({r['confidence'] * 100:.0f} %, {r['status']})")
    print(json.dumps({"benchmark": "realworld", "run": args.run, "dir": str(root),
                      "machine": {k: v for k, v in info.items() if k != "versions"}, "versions": info["versions"],
                      "overall": overall, "kinds": kinds, "sets": sets, "unsure": flagged,
                      "temperature": predictor.temperature, "min_confidence": predictor.min_confidence}))


if __name__ == "__main__":
    main()
