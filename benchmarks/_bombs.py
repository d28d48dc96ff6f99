"""Decompression bombs and a FIFO fed to `mnistlab` commands: is each refused (exit 2, one `error:`
line, for the right reason), and how much memory did the victim process reach? (benchmarks/
reliability.py's bomb phase)

    python benchmarks/_bombs.py [RUN] [--limit-mb 3000] [--timeout 120] [--keep DIR]

Each bomb is a file of 2-9 MB that unpacks to 2 GB (zeros, deflated or gzipped):

  idx-gz         a --data-path folder whose train-images-idx3-ubyte.gz unpacks to 2 GB, as its
                 header declares: `data fetch --data-path DIR --cache-dir EMPTY --offline`
  mnist-npz      a mnist.npz whose x_train unpacks to 2 GB: `data fetch --data-path FILE ...`
  cache-verify   the same file as the MNIST cache: `data verify --cache-dir DIR`
  cache-train    and `train --cache-dir DIR --offline` on it
  digits-npz     `finetune RUN --data digits.npz`, x a 2 GB uint8 array (8 GB as float32)
  keras-weights  a run whose model.keras holds a 2 GB model.weights.h5: `predict RUN digit.png`
  keras-config   a run whose model.keras holds a 2 GB config.json: `predict RUN digit.png`
  fifo-image     `predict f.png` where f.png is a FIFO: no memory, but it must not hang

Victims run one at a time with HOME an empty folder (no ~/.keras/datasets/mnist.npz to fall back
on) and MNISTLAB_CACHE the real MNIST cache. Peak RSS is the victim's VmHWM (Linux's high-water
mark of its own memory), written as it exits; not ru_maxrss, which on Linux also holds the RSS of
the process it was started from (a benchmark that trained in-process: 700 MB). A
watchdog kills it past --limit-mb or --timeout, so a regression shows as a figure rather than
a machine out of memory. Without RUN, a tiny run (`linear`, one epoch on 600 images) is trained
first, as finetune's parent and for the model bombs' config.json. About two minutes on a busy
2-core machine: 11 s of CPU to build the bombs, the rest mostly TensorFlow starting (the tiny
run, train, finetune).

Reuse: `build_bombs(folder, run)` writes the files and returns the victims; `run_victim` runs
one; `bomb_phase(workdir, run)` does both and prints the table.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header  # noqa: E402

from mnistlab.data import default_cache_dir  # noqa: E402

BOMB_BYTES = 2_000_000_000  # what each bomb unpacks to: 2 GB (under zip's 2 GiB limit without zip64)
BOMB_SHAPE = (BOMB_BYTES // 784, 28, 28)  # 2,551,020 digits of 28x28: 1,999,999,680 bytes of uint8
_BLOCK = bytes(1 << 20)  # zeros, written a MiB at a time


@dataclass(frozen=True)
class Victim:
    """One bomb and the command that is fed it."""

    name: str
    bomb: Path  # the file (or folder) that holds it
    unpacks_to: int  # bytes
    args: list[str]  # mnistlab's arguments
    expect: str  # words of the refusal that say it was refused for the right reason


def npy_header(shape: tuple[int, ...]) -> bytes:
    """An .npy header of uint8 `shape` (the data follows it)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes | tuple[bytes, int]]) -> Path:
    """A zip of deflated members: bytes as they are, or (head, n) for head then n zero bytes.

    Level 1: 2 GB of zeros deflate to 9 MB in 3 s; level 9 makes 2 MB of them, in 14 s.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, content in members.items():
            if isinstance(content, bytes):
                archive.writestr(name, content)
                continue
            head, zeros = content
            with archive.open(name, "w") as out:  # a name, not a ZipInfo: deflated as the archive says
                out.write(head)
                for _ in range(zeros // len(_BLOCK)):
                    out.write(_BLOCK)
                out.write(bytes(zeros % len(_BLOCK)))
    return path


def write_gz(path: Path, head: bytes, zeros: int) -> Path:
    """A .gz of head then `zeros` zero bytes; gzip members follow one another, so one MiB of zeros
    compressed once is repeated (2 GB in 2 MB, written in milliseconds)."""
    block = gzip.compress(_BLOCK, compresslevel=9)
    with open(path, "wb") as out:
        out.write(gzip.compress(head + bytes(zeros % len(_BLOCK)), compresslevel=9))
        out.write(block * (zeros // len(_BLOCK)))
    return path


def digit_png(path: Path) -> Path:
    """A drawn 7, for the commands that need an image beside their bomb."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (112, 112), 255)
    ImageDraw.Draw(image).line([(25, 25), (85, 25), (45, 95)], fill=0, width=10)
    image.save(path)
    return path


def build_bombs(folder: Path, run: Path) -> list[Victim]:
    """Write every bomb into folder and return the victims to feed them to.

    Args:
        run: a finished run folder: finetune's parent, and the source of the model bombs' other
            members (config.json, metadata.json).
    """
    folder.mkdir(parents=True, exist_ok=True)
    image = digit_png(folder / "digit.png")
    idx = folder / "idx"
    idx.mkdir()
    header = bytes([0, 0, 0x08, 3]) + b"".join(size.to_bytes(4, "big") for size in BOMB_SHAPE)
    write_gz(idx / "train-images-idx3-ubyte.gz", header, BOMB_SHAPE[0] * 784)  # as much as the header declares
    mnist_npz = write_zip(folder / "mnist.npz", {"x_train.npy": (npy_header(BOMB_SHAPE), BOMB_SHAPE[0] * 784)})
    cache = folder / "bomb-cache"
    cache.mkdir()
    shutil.copy(mnist_npz, cache / "mnist.npz")
    digits = write_zip(folder / "digits.npz", {"x.npy": (npy_header(BOMB_SHAPE), BOMB_SHAPE[0] * 784),
                                                "y.npy": (npy_header(BOMB_SHAPE[:1]), BOMB_SHAPE[0])})
    with zipfile.ZipFile(run / "model.keras") as model:
        members = {name: model.read(name) for name in model.namelist()}
    runs = {}
    for name, replaced in (("keras-weights", "model.weights.h5"), ("keras-config", "config.json")):
        runs[name] = folder / name
        runs[name].mkdir()
        write_zip(runs[name] / "model.keras", {**members, replaced: (b"", BOMB_BYTES)})
    fifo = folder / "f.png"
    os.mkfifo(fifo)
    empty = str(folder / "empty-cache")
    fetch = ["data", "fetch", "--cache-dir", empty, "--offline", "--json"]
    return [
        Victim("idx-gz", idx, BOMB_BYTES, [*fetch, "--data-path", str(idx)], "more than MNIST's largest array"),
        Victim("mnist-npz", mnist_npz, BOMB_BYTES, [*fetch, "--data-path", str(mnist_npz)],
               "x_train is uint8 (2551020, 28, 28), not uint8 (60000, 28, 28)"),
        Victim("cache-verify", cache / "mnist.npz", BOMB_BYTES, ["data", "verify", "--cache-dir", str(cache)],
               "is uint8 (2551020, 28, 28), not uint8 (60000, 28, 28)"),
        Victim("cache-train", cache / "mnist.npz", BOMB_BYTES,
               ["train", "--model", "linear", "--cache-dir", str(cache), "--offline", "--epochs", "1", "-q",
                "--out", str(folder / "never-trained")], "corrupt (x_train is uint8 (2551020, 28, 28)"),
        Victim("digits-npz", digits, BOMB_BYTES, ["finetune", str(run), "--data", str(digits), "--offline", "-q",
                                                  "--out", str(folder / "never-tuned")],
               "over the limit of 67,108,864 values"),
        Victim("keras-weights", runs["keras-weights"] / "model.keras", BOMB_BYTES,
               ["predict", str(runs["keras-weights"]), str(image)], "its members unpack to"),
        Victim("keras-config", runs["keras-config"] / "model.keras", BOMB_BYTES,
               ["predict", str(runs["keras-config"]), str(image)], "config.json unpacks to"),
        Victim("fifo-image", fifo, 0, ["predict", str(fifo)], "is a FIFO (named pipe), not a regular file"),
    ]


# The CLI as `mnistlab ARGS` runs it, writing its VmHWM (KiB) to the file named first as it exits.
_VICTIM = (
    "import atexit, sys\n"
    "def _peak(path=sys.argv[1]):\n"
    "    with open('/proc/self/status') as status, open(path, 'w') as out:\n"
    "        out.write(next(line.split()[1] for line in status if line.startswith('VmHWM')))\n"
    "atexit.register(_peak)\n"
    "from mnistlab.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def run_victim(victim: Victim, home: Path, limit_mb: float, timeout_s: float) -> dict[str, Any]:
    """Run `mnistlab ARGS` on one bomb: exit status, peak RSS (its VmHWM; the watchdog's highest
    reading when it was killed), seconds, and whether its refusal names the expected reason.
    Killed past limit_mb of RSS or timeout_s."""
    import psutil

    env = {**os.environ, "HOME": str(home), "MNISTLAB_CACHE": str(default_cache_dir()), "CUDA_VISIBLE_DEVICES": ""}
    peak_file = home / f"{victim.name}.vmhwm"
    peak_file.unlink(missing_ok=True)
    highest = [0.0]
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _VICTIM, str(peak_file), *victim.args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stopped: list[str] = []
    output: dict[str, bytes] = {}

    def drain(name: str, stream: Any) -> None:  # pipes read as they fill, so the child never blocks
        output[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("out", child.stdout), ("err", child.stderr))]
    for reader in readers:
        reader.start()

    def watch() -> None:
        process = psutil.Process(child.pid)
        while child.returncode is None and not stopped:
            try:
                rss_mb = process.memory_info().rss / 2**20
            except psutil.Error:  # it has ended
                return
            highest[0] = max(highest[0], rss_mb)
            late = time.perf_counter() - start > timeout_s
            if rss_mb > limit_mb or late:
                stopped.append(f"killed at {rss_mb:.0f} MB" if not late else f"killed after {timeout_s:g} s")
                child.kill()
                return
            time.sleep(0.02)

    watchdog = threading.Thread(target=watch, daemon=True)
    watchdog.start()
    child.wait()
    seconds = time.perf_counter() - start
    for reader in readers:
        reader.join()
    stopped.append("")  # ends the watchdog
    text = (output.get("out", b"") + output.get("err", b"")).decode(errors="replace")
    errors = [line for line in output.get("err", b"").decode(errors="replace").splitlines() if line.strip()]
    size = sum(p.stat().st_size for p in victim.bomb.rglob("*")) if victim.bomb.is_dir() else (
        victim.bomb.stat().st_size if victim.bomb.is_file() else 0)
    return {
        "bomb": victim.name,
        "command": "mnistlab " + " ".join(victim.args),
        "file_mb": round(size / 1e6, 1),
        "unpacks_to_gb": round(victim.unpacks_to / 1e9, 1),
        "exit": child.returncode,
        "peak_rss_mb": round(int(peak_file.read_text()) / 1024) if peak_file.is_file() else round(highest[0]),
        "seconds": round(seconds, 1),
        "killed": stopped[0] or None,
        # Warnings may come first; one `error:` line and no traceback is the contract.
        "one_error_line": sum(line.startswith("error: ") for line in errors) == 1 and "Traceback" not in text,
        "right_reason": victim.expect in text,
        "error": next((line[:200] for line in reversed(errors) if line.startswith("error: ")), None),
    }


def tiny_run(folder: Path) -> Path:
    """`linear` for one epoch on 600 images: a parent for finetune and a model.keras to take apart."""
    out = folder / "tiny-run"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-m", "mnistlab.cli", "train", "--model", "linear", "--epochs", "1",
                    "--train-limit", "600", "--test-limit", "100", "--offline", "-q", "--out", str(out)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return out


def bomb_phase(workdir: Path, run: Path | None = None, limit_mb: float = 3000, timeout_s: float = 120) -> dict:
    """Build the bombs in workdir, feed each to its victim, print a table; return the figures."""
    run = run or tiny_run(workdir)
    start = time.perf_counter()
    victims = build_bombs(workdir / "bombs", Path(run))
    built_s = time.perf_counter() - start
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    rows = [run_victim(victim, home, limit_mb, timeout_s) for victim in victims]
    print(f"bombs built in {built_s:.0f} s; each victim killed past {limit_mb:g} MB or {timeout_s:g} s")
    print(f"{'bomb':<15}{'file MB':>8}{'unpacks':>9}{'exit':>6}{'peak RSS MB':>13}{'s':>6}  refused for the reason")
    for r in rows:
        verdict = "yes" if r["right_reason"] and r["one_error_line"] and r["exit"] == 2 else f"NO: {r['error']}"
        print(f"{r['bomb']:<15}{r['file_mb']:>8}{r['unpacks_to_gb']:>7} GB{r['exit']:>6}{r['peak_rss_mb']:>13}"
              f"{r['seconds']:>6}  {r['killed'] or verdict}")
    return {"built_seconds": round(built_s, 1), "limit_mb": limit_mb, "victims": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, help="a finished run folder (default: train a tiny one)")
    parser.add_argument("--limit-mb", type=float, default=3000, help="kill a victim whose RSS passes this")
    parser.add_argument("--timeout", type=float, default=120, help="kill a victim running longer (seconds)")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    info = header()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="mnistlab-bombs-"))
    try:
        results = bomb_phase(workdir, args.run, args.limit_mb, args.timeout)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"benchmark": "bombs", "machine": {k: v for k, v in info.items() if k != "versions"},
                      "versions": info["versions"], **results}))


if __name__ == "__main__":
    main()
