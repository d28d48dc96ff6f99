"""Training loss and accuracy within epochs: batches.csv, a few dozen rows an epoch, so a run of
one epoch (the default) still has a learning curve to draw.

    mnistlab train && mnistlab report latest   # the report draws it for runs of a few epochs

Keras gives a callback, after every step (or every steps_per_execution steps), the running mean
of each metric since the epoch began. A row holds the mean over the steps since the row before,
recovered from two running means: exact for equal batches, off by the epoch's last, smaller batch
at most. Rows go to the file at every epoch's end, the whole file rewritten atomically; a resumed
run keeps the rows of the epochs its checkpoint holds and writes the rest again.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import keras

from mnistlab.files import atomic_write_text

# Rows an epoch, at most: enough for a curve, few enough that a long run's file stays small
# (100 epochs are about 5,000 rows, 200 KB). Fewer when steps_per_execution steps go by between
# calls (27 an epoch for the default fast run: 422 steps, 16 a call).
ROWS_PER_EPOCH = 50
COLUMNS = ("epoch", "batch", "batches", "loss", "accuracy")  # epoch from 0, as history.csv's


class BatchLogger(keras.callbacks.Callback):
    """Write the training loss and accuracy every few batches to a CSV file (COLUMNS).

    Each row: the epoch (from 0), the batches done in it so far and the batches an epoch has, then
    the mean loss and accuracy over the batches since the previous row.
    """

    def __init__(self, path: Path, rows_per_epoch: int = ROWS_PER_EPOCH):
        super().__init__()
        self.path = Path(path)
        self.rows_per_epoch = rows_per_epoch
        self.rows: list[dict[str, str]] | None = None  # read on the first epoch: a resumed run's
        self.epoch = 0
        self.done = 0  # batches done in the epoch at the last row
        self.means: dict[str, float] = {}  # the running means then

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.rows is None:
            self.rows = _read(self.path)
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch]  # a killed run's last epoch
        self.epoch, self.done, self.means = epoch, 0, {}

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        steps = self.params.get("steps") or 0
        done = batch + 1 if not steps else min(batch + 1, steps)  # a last call of fewer steps
        every = max(1, math.ceil(steps / self.rows_per_epoch)) if steps else 1
        if done - self.done < every and done != steps:
            return
        row = {"epoch": str(self.epoch), "batch": str(done), "batches": str(steps or "")}
        for key in COLUMNS[3:]:
            mean = logs.get(key)
            if mean is None:
                row[key] = ""
                continue
            # The running mean over `done` batches, less that over the first self.done.
            total = float(mean) * done - self.means.get(key, 0.0) * self.done
            row[key] = repr(total / (done - self.done))
            self.means[key] = float(mean)
        self.done = done
        self.rows.append(row)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows or [])
        atomic_write_text(self.path, out.getvalue())


def _read(path: Path) -> list[dict[str, str]]:
    """The rows already in the file (a resumed run's); none if there is no such file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [r for r in csv.DictReader(f) if (r.get("epoch") or "").isdigit()]
    except (FileNotFoundError, UnicodeDecodeError, csv.Error):
        return []
