"""Running a study: the objective (one train() per trial), pruning, the time budget, the
database, and the line printed per trial.

    mnistlab tune --study runs/tune --trials 20 --epochs 3 --trial-timeout 120
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import random
import socket
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import filelock
import keras
import optuna
import sqlalchemy

from mnistlab.config import Config
from mnistlab.data import MnistArrays, load_mnist
from mnistlab.errors import MnistlabError
from mnistlab.train import train
from mnistlab.tune.results import write_results
from mnistlab.tune.space import DEFAULT_SPACE, TuneError, parse_space, trial_config

TUNE_PRESET = "cnn"  # what `mnistlab tune` starts from: the seed's network, with a validation split

# A trial is pruned at the end of an epoch when its validation accuracy is below the median of
# earlier trials' at that epoch; the first five trials always finish, to set the median.
PRUNE_AFTER_TRIALS = 5
HEARTBEAT_INTERVAL = 60  # seconds between a running trial's heartbeats in the database
# A trial whose worker stopped beating for this many intervals is failed and queued again, once.
STALE_AFTER_BEATS = 3
CONNECT_TIMEOUT = 10  # seconds to reach a database server before giving up
SCHEMA_LOCK_TIMEOUT = 120  # seconds to wait while another local worker sets up a SQLite study


class StorageError(TuneError):
    """A study database that cannot be reached or used."""


class PruneOnValAccuracy(keras.callbacks.Callback):
    """Report each epoch's validation accuracy to the trial; end the fit if the pruner says so.

    Raising optuna.TrialPruned out of fit() is how Optuna's own Keras integrations stop a trial;
    train() then leaves the trial's run folder without a final model.
    """

    def __init__(self, trial: optuna.Trial):
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("val_accuracy")
        if value is None:
            return
        self.trial.report(float(value), step=epoch + 1)  # step = epochs done
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} at validation accuracy {value:.4f}")


class TimeBudget(keras.callbacks.Callback):
    """Stop training after `seconds` of fit time; the epoch under way ends early and is validated."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.start = 0.0
        self.stopped = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.start:  # a run of several fit() calls keeps one clock
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped = True


def storage_url(storage: str | None, study_dir: Path) -> sqlalchemy.engine.URL:
    """The study database: `storage` as a SQLAlchemy URL, or SQLite in the study folder.

    A plain postgresql:// URL is read with psycopg 3, the driver mnistlab installs.

    Raises:
        StorageError: not a database URL.
    """
    text = storage or f"sqlite:///{(study_dir / 'study.db').resolve()}"
    try:
        url = sqlalchemy.engine.make_url(text)
    except sqlalchemy.exc.ArgumentError:
        raise StorageError(f"storage {text[:80]!r} is not a database URL "
                           "(e.g. sqlite:///study.db or postgresql://user@host/db).") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def schema_lock(url: sqlalchemy.engine.URL) -> contextlib.AbstractContextManager:
    """The lock every opener of a SQLite study file holds while Optuna checks or creates its tables:
    `study.db.lock` beside `study.db`. Anything that opens the file (a second worker, a test
    watching the study) takes it too; a server database gets no lock (see open_storage).
    """
    database = url.database if url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return contextlib.nullcontext()
    return filelock.FileLock(f"{database}.lock", timeout=SCHEMA_LOCK_TIMEOUT)


def open_storage(url: sqlalchemy.engine.URL, heartbeat_interval: int) -> optuna.storages.RDBStorage:
    """Connect to the study database, creating Optuna's tables on first use.

    Raises:
        StorageError: no driver for the URL, a server that cannot be reached, or a database
            Optuna cannot use.
    """
    shown = url.render_as_string(hide_password=True)
    sqlite = url.get_backend_name() == "sqlite"
    # SQLite: wait for another local worker's write; a server: fail fast, and re-check pooled
    # connections that may have gone stale during a long trial.
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": 60}} if sqlite
        else {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
        if url.get_backend_name() == "postgresql" else {"pool_pre_ping": True}
    )
    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as e:
        raise StorageError(f"no database driver for {shown}: {str(e).splitlines()[0]}.") from None
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StorageError(f"cannot reach the study database {shown}: {reason}") from None
    # Workers that start together race to create the tables ("table trials already exists",
    # "UNIQUE constraint failed: alembic_version"). On SQLite every local opener takes a file lock
    # beside the database first, so one creates the schema while the others wait and then find
    # it whole; a server has no shared folder to lock in, so there the loser retries.
    lock = schema_lock(url)
    for attempt in range(5):
        try:
            with lock, warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url.render_as_string(hide_password=False),
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=STALE_AFTER_BEATS * heartbeat_interval,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except filelock.Timeout:
            raise StorageError(f"waited {SCHEMA_LOCK_TIMEOUT} s for another worker to set up {shown}; "
                               f"if none is running, delete {lock.lock_file}.") from None
        except sqlalchemy.exc.SQLAlchemyError as e:
            if attempt == 4:
                reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
                raise StorageError(f"cannot set up the study tables in {shown}: {reason}") from None
            time.sleep(0.2 + random.random())
        except RuntimeError as e:  # a schema from another Optuna version
            raise StorageError(f"study database {shown}: {str(e).splitlines()[0]}") from None
    raise AssertionError("unreachable")


class Progress:
    """One line per finished trial: n/N, its result, the study's best so far, an ETA."""

    def __init__(self, trials: int, timeout: float | None, show: bool):
        self.trials, self.timeout, self.show = trials, timeout, show
        self.start = time.perf_counter()
        self.done = 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.done += 1
        if not self.show:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.trials - self.done)
        if self.timeout is not None:
            eta = min(eta, max(0.0, self.timeout - elapsed))
        state = trial.state.name.lower()
        if trial.state == optuna.trial.TrialState.PRUNED:
            state += f" after epoch {trial.last_step}"
        value = trial.value  # a pruned trial's: its last reported validation accuracy
        result = f"val accuracy {value * 100:.2f} %" if value is not None else trial.user_attrs.get("error", "")
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        best = max(complete, key=lambda t: t.value, default=None)
        best_text = f"best {best.value * 100:.2f} % (#{best.number})" if best else "no best yet"
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        print(f"trial {self.done}/{self.trials} #{trial.number} {state}: {result}; {best_text}; "
              f"{seconds:.0f} s, ETA {_duration(eta)}", flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _comparable(base: Config) -> dict[str, Any]:
    """What every worker of one study must share: the base config less what cannot change a
    trial's score (machine-local paths, output, the test slice)."""
    d = base.to_dict()
    for key in ("out", "data_path", "offline", "verbose", "test_limit"):
        d["train"].pop(key, None)
    return d


def tune(
    space: Mapping[str, Any] = DEFAULT_SPACE,
    *,
    base: Config,
    study_dir: str | Path,
    storage: str | None = None,
    study_name: str | None = None,
    trials: int = 20,
    timeout: float | None = None,
    trial_timeout: float | None = None,
    data: MnistArrays | None = None,
    seed: int = 0,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    progress: bool = True,
) -> dict[str, Any]:
    """Run `trials` trials of a study (joining it if it exists), then write its results.

    Args:
        space: the search space (DEFAULT_SPACE's shape; see read_space).
        base: every setting the space does not draw: epochs, data slice, validation split,
            seed... Each trial trains `base` with its drawn settings.
        study_dir: this worker's folder: study.db (the default storage), trials/trial-NNNN run
            folders, trials.csv, best.toml, summary.json and the plots.
        storage: a SQLAlchemy URL shared by several workers (postgresql://user:pw@host/db);
            None = sqlite in study_dir.
        study_name: the study in the storage (default: study_dir's name); workers of one study
            give the same name, space and base settings.
        trials: trials this call runs; other workers' trials add to the study's. 0 runs none
            and only writes the results of the study as it stands.
        timeout: seconds after which no new trial starts (None = no limit).
        trial_timeout: seconds of training after which a trial stops and is scored as it is.
        data: MNIST in memory (loaded as base.train says when None).
        seed: seeds the sampler of a new study in its own SQLite file; workers joining a study
            (or sharing a server) draw with fresh randomness, so no two repeat each other.
        heartbeat_interval: seconds between a running trial's heartbeats; a trial silent for
            three intervals is failed and run again by the next worker that asks for a trial.
        progress: print a line per trial.

    Returns:
        The summary written to summary.json, plus "rows": one dict per trial (trials.csv).

    Raises:
        TuneError: a bad space, storage or setting (SpaceError, StorageError).
    """
    params = parse_space(space)
    t = base.train
    if t.validation_split <= 0:
        raise TuneError("tuning scores trials on the validation split; set validation_split > 0.")
    if t.ensemble != 1:
        raise TuneError("tuning trains single models; set ensemble to 1.")
    if trials < 0:
        raise TuneError("trials must be >= 0 (0 only writes the study's results).")
    for label, limit in (("timeout", timeout), ("trial_timeout", trial_timeout)):
        if limit is not None and not limit > 0:
            raise TuneError(f"{label} must be > 0 seconds.")
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    study_name = study_name or study_dir.resolve().name
    url = storage_url(storage, study_dir)
    shown = url.render_as_string(hide_password=True)
    raw_space = json.loads(json.dumps(dict(space)))

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial replaces its log
    # Every trial builds new models, which TensorFlow's retracing warning mistakes for a leak.
    tf_logger = logging.getLogger("tensorflow")
    tf_level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        rdb = open_storage(url, heartbeat_interval)
        existing = _existing_trials(rdb, study_name)
        sampler_seed = seed if storage is None and existing == 0 else None
        study = optuna.create_study(
            storage=rdb,
            study_name=study_name,
            direction="maximize",
            load_if_exists=True,
            # constant_liar: a worker sampling while others' trials run avoids their settings.
            sampler=optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=1),
        )
        _claim_settings(study, raw_space, _comparable(base), shown)
        if data is None and trials:
            data = load_mnist(path=t.data_path or None, offline=t.offline, progress=progress)
        if progress and trials:
            _print_start(study, shown, trials, timeout)
        counter = Progress(trials, timeout, progress)
        worker = f"{socket.gethostname()}:{os.getpid()}"

        def objective(trial: optuna.Trial) -> float:
            trial.set_user_attr("worker", worker)
            out = study_dir / "trials" / f"trial-{trial.number:04d}"
            try:
                cfg = trial_config(trial, params, base, study_name)
                cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, out=str(out), verbose=0))
                trial.set_user_attr("run", str(out))
                budget = [TimeBudget(trial_timeout)] if trial_timeout else []
                result = train(cfg, data=data, callbacks=[PruneOnValAccuracy(trial), *budget])
            except MnistlabError as e:
                trial.set_user_attr("error", str(e))
                raise
            m = result.metrics
            trial.set_user_attr("epochs_run", m["epochs_run"])
            trial.set_user_attr("parameters", m["params"])
            if budget and budget[0].stopped:
                trial.set_user_attr("note", f"stopped by the {trial_timeout:g} s time budget")
            return m["val_accuracy"]

        try:
            if trials:
                study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[counter],
                               catch=(MnistlabError,), gc_after_trial=True)
        except sqlalchemy.exc.OperationalError as e:
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
            raise StorageError(f"lost the study database {shown}: {reason}") from None
        except KeyboardInterrupt:
            write_results(study, study_dir, params, base, storage=shown)  # what finished, then stop
            raise
        summary = write_results(study, study_dir, params, base, storage=shown)
    finally:
        optuna.logging.set_verbosity(verbosity)
        tf_logger.setLevel(tf_level)
    summary["ran"] = counter.done
    return summary


def _existing_trials(storage: optuna.storages.RDBStorage, study_name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def _claim_settings(study: optuna.Study, space: dict[str, Any], base: dict[str, Any], shown: str) -> None:
    """Record the study's space and base settings, or refuse a worker that brings others."""
    for key, value in (("space", space), ("base", base)):
        held = study.user_attrs.get(key)
        if held is None:
            study.set_user_attr(key, value)
        elif held != value:
            what = "a different search space" if key == "space" else \
                "different base settings (epochs, data slice, seed...)"
            raise TuneError(f"study {study.study_name!r} in {shown} was started with {what}; "
                            "use the same or another study name.")


def _print_start(study: optuna.Study, shown: str, trials: int, timeout: float | None) -> None:
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    limit = f", for up to {_duration(timeout)}" if timeout else ""
    print(f"study {study.study_name} in {shown}: {len(finished)} trials so far; running {trials} more{limit}",
          flush=True)
