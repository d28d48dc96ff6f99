"""Cold start: `mnistlab predict IMAGE` from a new process, wall time and peak memory.

    python benchmarks/cold_start.py [--model RUN] [--runs 5] [IMAGE]

Each run is a fresh `mnistlab predict IMAGE --json` (the shipped reader, or --model RUN), timed
from the process's start to its exit; its peak RSS is read back from the kernel (getrusage of
the finished child, in a wrapper process of its own so runs do not mix). Without IMAGE, a
drawn digit is written to a temporary PNG. Prints each run, the medians and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

# Runs the command, then prints its wall seconds and the child's peak RSS in KiB (Linux units).
WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - start\n"
    "print(json.dumps({'rc': done.returncode, 'wall_s': wall, 'out': done.stdout[-300:], 'err': done.stderr[-300:],\n"
    "                  'peak_rss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def drawn_digit(path: Path) -> None:
    """A 7 in dark ink on white, as a phone or a drawing page would give it."""
    image = Image.new("L", (400, 400), 245)
    ImageDraw.Draw(image).line([(110, 100), (290, 100), (180, 320)], fill=30, width=22)
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", help="the image to read (default: a drawn 7)")
    parser.add_argument("--model", help="a run folder instead of the shipped reader")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    info = header()
    scratch = Path(tempfile.mkdtemp(prefix="mnistlab-cold-"))
    try:
        image = Path(args.image) if args.image else scratch / "seven.png"
        if not args.image:
            drawn_digit(image)
        command = [shutil.which("mnistlab") or "mnistlab", "predict", str(image), "--json"]
        if args.model:
            command += ["--model", args.model]
        runs = []
        for k in range(args.runs):
            done = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True,
                                  check=True)
            run = json.loads(done.stdout)
            if run["rc"] != 0:
                sys.exit(f"error: mnistlab predict failed: {run['err'].strip()}")
            runs.append(run)
            print(f"run {k + 1}: {run['wall_s']:.2f} s, peak RSS {run['peak_rss_kib'] / 1024:.0f} MB; "
                  f"answer {json.loads(run['out'])[0]['digit']}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wall = statistics.median(r["wall_s"] for r in runs)
    rss = statistics.median(r["peak_rss_kib"] for r in runs) / 1024
    print(f"median of {len(runs)}: {wall:.2f} s, peak RSS {rss:.0f} MB ({args.model or 'shipped reader'})")
    print(json.dumps({"benchmark": "cold_start", "model": args.model or "reader", "runs": len(runs),
                      "machine": {k: v for k, v in info.items() if k != "versions"}, "versions": info["versions"],
                      "wall_s_median": round(wall, 3), "peak_rss_mb_median": round(rss, 1),
                      "wall_s": [round(r["wall_s"], 3) for r in runs],
                      "peak_rss_mb": [round(r["peak_rss_kib"] / 1024, 1) for r in runs]}))


if __name__ == "__main__":
    main()
