"""Put a trained run into the package as the shipped reader: src/mnistlab/reader/.

    mnistlab train --model reader --out runs/reader
    python scripts/ship_reader.py runs/reader

Exports the run to ONNX (`mnistlab export`: the file is reloaded on onnxruntime and checked against
the Keras model on the 10,000 MNIST test images before it is written), then copies model.onnx and
the run's config.toml into the package, and its metrics.json with a "shipped" record added: the
ONNX file's SHA-256 and size, the parity check's figures, and the run it came from.
tests/test_reader.py checks all three against each other.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from mnistlab.export import export_model
from mnistlab.files import atomic_write, atomic_write_json
from mnistlab.runs import RunDir
from mnistlab.runtimes import READER_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run folder (mnistlab train --model reader)")
    parser.add_argument("--offline", action="store_true", help="MNIST from the cache only")
    args = parser.parse_args()
    run = RunDir.open(Path(args.run))
    result = export_model(run.path, "onnx", offline=args.offline, progress=True)
    onnx = Path(result["path"])
    metrics = run.read_metrics()
    metrics["shipped"] = {
        "from_run": run.path.resolve().name,
        "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(),
        "size_bytes": onnx.stat().st_size,
        "parity": {key: result[key] for key in ("n", "agreement", "max_abs_diff", "test_accuracy",
                                                 "keras_test_accuracy")},
    }
    READER_DIR.mkdir(exist_ok=True)
    # Each file whole or not at all: an interrupted copy must not leave a reader that loads.
    for source, name in ((onnx, "model.onnx"), (run.config, "config.toml")):
        atomic_write(READER_DIR / name, lambda f, source=source: f.write(source.read_bytes()))
    atomic_write_json(READER_DIR / "metrics.json", metrics)
    print(json.dumps(metrics["shipped"]))


if __name__ == "__main__":
    main()
