"""Hyper-parameter search: an Optuna study over the network's and the run's settings, one train()
per trial, scored on the validation split.

    mnistlab tune --study runs/tune --trials 20 --epochs 3 --trial-timeout 120

Each trial draws settings from a search space (DEFAULT_SPACE, or a `[space]` table read by
read_space), trains them with train() on the base Config's data slice, epochs and seed, and is
scored by its final validation accuracy; the test set decides nothing (train() still scores each
trial's model on it, in that trial's run folder, never in the study's tables). Trials that fall
behind the median of earlier ones at the same epoch are pruned. The study lives in a database:
SQLite in the study folder by default, or any SQLAlchemy URL (PostgreSQL) shared by workers on
several machines; a stopped study resumes where it was, and a trial left running by a killed
worker is failed and queued again once its heartbeat stops. Every worker writes the study's
results into its own study folder: trials.csv, best.toml (`mnistlab train --config best.toml`
retrains the best trial), summary.json and the plots.

space.py holds the search space and its file, study.py runs the study (objective, pruning, time
budget, database), results.py writes what a study leaves behind.
"""

from mnistlab.tune.results import format_trials, trial_rows, write_results
from mnistlab.tune.space import (
    DEFAULT_SPACE,
    Param,
    SpaceError,
    TuneError,
    parse_space,
    read_space,
    trial_config,
)
from mnistlab.tune.study import (
    TUNE_PRESET,
    PruneOnValAccuracy,
    StorageError,
    TimeBudget,
    open_storage,
    storage_url,
    tune,
)

__all__ = [
    "DEFAULT_SPACE", "TUNE_PRESET", "Param", "PruneOnValAccuracy", "SpaceError", "StorageError", "TimeBudget",
    "TuneError", "format_trials", "open_storage", "parse_space", "read_space", "storage_url", "trial_config",
    "trial_rows", "tune", "write_results",
]
