"""Accuracy on real handwriting: our MNIST-faithful preprocessing against the naive one.

    python benchmarks/realworld.py RUN [DIR] [--min-confidence 0.5] [--sheet sheet.png]

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
from mnistlab.predict import Predictor, contact_sheet  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realworld"


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
    items = labelled_rows(root)
    predictor = Predictor.from_run(args.run)
    if args.min_confidence is not None:
        predictor.min_confidence = args.min_confidence
    files = [r["file"] for r in items]
    ours = predictor.predict(files)
    naive_digits = predictor.probabilities(np.stack([naive(f) for f in files])).argmax(axis=1)
    rows = [{**r, "ours": p.digit, "status": p.status, "confidence": p.confidence,
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
