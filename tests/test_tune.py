"""Tuning: the search space and its file, pruning and the time budget, a short SQLite study whose
best.toml retrains, a killed worker's study resumed, and two workers sharing one PostgreSQL study.

The PostgreSQL test starts its own throwaway server (initdb into a temporary folder, pg_ctl on a
free loopback port); it is skipped with the reason where no server can be started, and fails
under CI, whose .ci/run installs PostgreSQL.
"""

import csv
import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from glob import glob
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest
import sqlalchemy

from mnistlab.config import (
    Config,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    read_config_file,
)
from mnistlab.train import train
from mnistlab.tune import (
    DEFAULT_SPACE,
    PruneOnValAccuracy,
    SpaceError,
    StorageError,
    TimeBudget,
    TuneError,
    open_storage,
    parse_space,
    read_space,
    storage_url,
    trial_config,
    tune,
)

# Trials small enough for two cores: one or two conv blocks of 4-8 filters, 1,800 images.
TINY_SPACE = {
    "conv_blocks": {"low": 1, "high": 2},
    "conv_filters": {"choices": [4, 8]},
    "dense_layers": {"low": 0, "high": 1},
    "dense_units": {"choices": [16, 32]},
    "activation": {"choices": ["relu", "tanh", "gelu"]},
    "pooling": {"choices": ["max", "avg"]},
    "learning_rate": {"low": 2e-3, "high": 1e-2, "log": True},
    "batch_size": {"choices": [64, 128]},
}
TINY_BASE = Config(
    model=ModelConfig(name="tiny", conv_filters=(8,), dense_units=(16,)),
    train=TrainConfig(epochs=2, train_limit=2000, test_limit=300, validation_split=0.1, patience=0, offline=True),
)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

# A worker process: what `mnistlab tune` does, with the arguments as JSON.
WORKER = """
import json, sys
from mnistlab.config import config_from_dict
from mnistlab.tune import tune
a = json.loads(sys.argv[1])
tune(a["space"], base=config_from_dict(a["base"]), study_dir=a["study_dir"], storage=a["storage"],
     study_name=a["name"], trials=a["trials"], heartbeat_interval=a["heartbeat"])
"""


def start_worker(study_dir, trials, storage=None, name="tiny-study", heartbeat=1):
    args = {"space": TINY_SPACE, "base": TINY_BASE.to_dict(), "study_dir": str(study_dir), "storage": storage,
            "name": name, "trials": trials, "heartbeat": heartbeat}
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


# --- the space ----------------------------------------------------------------------------------


def test_default_space_covers_the_seed_choices():
    params = parse_space(DEFAULT_SPACE)
    assert set(params["activation"].choices) == {"relu", "sigmoid", "tanh", "gelu"}
    assert set(params["pooling"].choices) == {"max", "avg"}
    for name in ("conv_blocks", "conv_filters", "kernel_size", "dense_layers", "dense_units", "dropout", "l2",
                 "batch_norm", "learning_rate", "schedule", "batch_size", "augment"):
        assert not params[name].fixed, name
    assert params["learning_rate"].log and 0 < params["learning_rate"].low < params["learning_rate"].high


def test_trial_config_draws_every_block_and_keeps_the_base():
    params = parse_space({**DEFAULT_SPACE, "epochs": 5})
    fixed = optuna.trial.FixedTrial({
        "conv_blocks": 2, "conv_filters_0": 16, "conv_filters_1": 64, "kernel_size": 5, "activation": "gelu",
        "pooling": "avg", "dense_layers": 0, "dropout": 0.25, "l2": 1e-4, "batch_norm": True,
        "learning_rate": 3e-3, "schedule": "onecycle", "batch_size": 64, "augment": 0.5,
    })
    cfg = trial_config(fixed, params, TINY_BASE, "study")
    m, t = cfg.model, cfg.train
    assert (m.name, m.conv_filters, m.kernel_size, m.activation, m.pooling, m.dense_units) == (
        "study", (16, 64), 5, "gelu", "avg", ())
    assert (m.dropout, m.l2, m.batch_norm) == (0.25, 1e-4, True)
    assert (t.learning_rate, t.schedule, t.batch_size, t.augment, t.epochs) == (3e-3, "onecycle", 64, 0.5, 5)
    assert (t.train_limit, t.validation_split, t.seed) == (2000, 0.1, 0)  # the base's, untouched


def test_read_space_from_toml_and_yaml(tmp_path):
    toml = tmp_path / "space.toml"
    toml.write_text('[space]\nconv_blocks = { low = 1, high = 2 }\nconv_filters = { choices = [8, 16] }\n'
                    'learning_rate = { low = 1e-4, high = 1e-2, log = true }  # Adam\nepochs = 3\n')
    yaml_file = tmp_path / "space.yaml"
    yaml_file.write_text("space:\n  conv_blocks: {low: 1, high: 2}\n  conv_filters: {choices: [8, 16]}\n"
                         "  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n  epochs: 3\n")
    assert read_space(toml) == read_space(yaml_file)
    params = parse_space(read_space(toml))
    assert params["epochs"].fixed and params["epochs"].value == 3
    assert (params["conv_blocks"].low, params["conv_blocks"].high) == (1, 2)


@pytest.mark.parametrize("text, fragment", [
    ("[space]\nwidth = { low = 1, high = 2 }", "'width' is no setting"),
    ("[space]\nvalidation_split = { low = 0.1, high = 0.3 }", "'validation_split' cannot be searched"),
    ("[space]\nseed = { choices = [0, 1] }", "'seed' cannot be searched"),
    ("[space]\ndropout = { low = 0.0, high = 1.0 }", "dropout must be in [0, 1)"),
    ("[space]\nactivation = { choices = ['relu', 'swoosh'] }", "activation must be one of"),
    ("[space]\nactivation = { low = 1, high = 2 }", "a range needs a number setting"),
    ("[space]\nl2 = { low = 0.0, high = 0.1, log = true }", "l2: a log range needs low > 0"),
    ("[space]\nlearning_rate = { low = 0.0, high = 0.1 }", "learning_rate must be > 0"),
    ("[space]\nlearning_rate = { low = 0.1, high = 0.01 }", "low must be <= high"),
    ("[space]\nkernel_size = { low = 1.5, high = 3 }", "whole numbers"),
    ("[space]\nbatch_size = { choices = [] }", "non-empty list"),
    ("[space]\nbatch_size = { choices = [64, 64] }", "repeat"),
    ("[space]\nbatch_size = { low = 32, high = 64, steps = 32 }", "unknown key 'steps'"),
    ("[space]\nconv_blocks = { low = 1, high = 3 }", "conv_blocks needs conv_filters"),
    ("[space]\n", "non-empty table"),
    ("[model]\nkernel_size = 3", "one [space] table"),
    ("[space\nx = 1", "not valid TOML"),
])
def test_bad_space_file_is_one_line(tmp_path, text, fragment):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(SpaceError) as e:
        read_space(path)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_missing_or_misnamed_space_file(tmp_path):
    with pytest.raises(SpaceError, match="cannot read space file"):
        read_space(tmp_path / "none.toml")
    (tmp_path / "space.json").write_text("{}")
    with pytest.raises(SpaceError, match="must end in .toml"):
        read_space(tmp_path / "space.json")


def test_bad_settings_and_storage_are_refused(tmp_path):
    no_split = Config(model=TINY_BASE.model, train=TrainConfig(validation_split=0.0, patience=0))
    with pytest.raises(TuneError, match="validation split"):
        tune(TINY_SPACE, base=no_split, study_dir=tmp_path / "a", trials=1)
    with pytest.raises(StorageError, match="not a database URL"):
        tune(TINY_SPACE, base=TINY_BASE, study_dir=tmp_path / "b", storage="no such thing", trials=1)
    with pytest.raises(StorageError, match="no database driver"):
        tune(TINY_SPACE, base=TINY_BASE, study_dir=tmp_path / "c", storage="nosuchdb://x/y", trials=1)
    # A port nobody listens on: refused at once, one line, the password hidden.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(StorageError, match="cannot reach the study database") as e:
        tune(TINY_SPACE, base=TINY_BASE, study_dir=tmp_path / "d", trials=1,
             storage=f"postgresql://tuner:secret@127.0.0.1:{port}/studies")
    assert "secret" not in str(e.value) and "\n" not in str(e.value)
    assert time.perf_counter() - started < 30


# --- callbacks ----------------------------------------------------------------------------------


def test_pruning_callback_reports_and_prunes():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.9))
    trial = study.ask()
    callback = PruneOnValAccuracy(trial)
    callback.on_epoch_end(0, {"val_accuracy": 0.95, "accuracy": 0.2})
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        callback.on_epoch_end(1, {"val_accuracy": 0.5})
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].intermediate_values == {1: 0.95, 2: 0.5}


def test_pruning_and_time_budget_end_a_real_train(mnist, tmp_path):
    cfg = Config(model=TINY_BASE.model, train=TrainConfig(**{**TINY_BASE.to_dict()["train"], "verbose": 0}))
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))

    def objective(trial):
        run = TrainConfig(**{**cfg.to_dict()["train"], "out": str(tmp_path / "pruned")})
        return train(Config(model=cfg.model, train=run), data=mnist, callbacks=[PruneOnValAccuracy(trial)]
                     ).metrics["val_accuracy"]

    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [1]
    assert not (tmp_path / "pruned" / "model.keras").exists()  # the fit ended inside the first epoch's end

    run = TrainConfig(**{**cfg.to_dict()["train"], "out": str(tmp_path / "budget"), "epochs": 3})
    budget = TimeBudget(0.0)
    result = train(Config(model=cfg.model, train=run), data=mnist, callbacks=[budget])
    assert budget.stopped and result.metrics["epochs_run"] == 1 and result.metrics["val_accuracy"] is not None


def test_time_budget_stops_the_fit_within_the_epoch():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x, y = np.zeros((512, 4), "float32"), np.eye(2, dtype="float32")[np.zeros(512, int)]
    budget = TimeBudget(0.0)
    history = model.fit(x, y, batch_size=8, epochs=5, callbacks=[budget], verbose=0)
    assert budget.stopped and len(history.history["loss"]) == 1


# --- studies ------------------------------------------------------------------------------------


# Opens a new SQLite study as a worker does, once the file `go` exists, so that all start together.
OPENER = """
import os, sys, time
from pathlib import Path
import optuna
from mnistlab.tune import open_storage, storage_url
study_dir = Path(sys.argv[1])
while not (study_dir / "go").exists():
    time.sleep(0.01)
storage = open_storage(storage_url(None, study_dir), heartbeat_interval=1)
optuna.create_study(storage=storage, study_name="race", load_if_exists=True)
print("opened", flush=True)
"""


def test_workers_opening_a_new_sqlite_study_at_once_all_get_it(tmp_path):
    """Several workers started together on a new study.db: one creates Optuna's tables, the
    others wait on the schema lock and find them whole (no "table trials already exists")."""
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    openers = [subprocess.Popen([sys.executable, "-c", OPENER, str(study_dir)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    (study_dir / "go").touch()
    outputs = [p.communicate(timeout=300)[0] for p in openers]
    for p, out in zip(openers, outputs):
        assert p.returncode == 0 and out.strip().endswith("opened"), out
    assert len(optuna.get_all_study_summaries(f"sqlite:///{study_dir / 'study.db'}")) == 1


def test_sqlite_study_writes_results_and_best_toml_retrains(mnist, tmp_path):
    study_dir = tmp_path / "study"
    summary = tune(TINY_SPACE, base=TINY_BASE, study_dir=study_dir, trials=4, data=mnist, progress=False)
    assert summary["trials"] == 4 and summary["ran"] == 4 and summary["complete"] + summary["pruned"] == 4
    for name in ("study.db", "trials.csv", "best.toml", "summary.json", "optimization_history.png",
                 "param_importances.png"):
        assert (study_dir / name).is_file(), name
    with open(study_dir / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    values = {int(r["number"]): float(r["val_accuracy"]) for r in rows if r["state"] == "complete"}
    best = summary["best"]
    assert best["val_accuracy"] == pytest.approx(max(values.values()), abs=1e-6)
    assert max(values.values()) >= values[0]  # trial 0 always completes: pruning starts at the 6th
    assert json.loads((study_dir / "summary.json").read_text())["best"]["number"] == best["number"]

    # best.toml is a config file like any other; training it repeats the best trial to the bit.
    cfg = config_from_dict(read_config_file(study_dir / "best.toml"))
    assert cfg.train.out == "" and cfg.train.validation_split == 0.1 and cfg.model.name == "study"
    run = dataclasses.replace(cfg.train, out=str(tmp_path / "retrained"), verbose=0)
    retrained = train(dataclasses.replace(cfg, train=run), data=mnist)
    assert retrained.metrics["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)

    # Another worker of the same study, with other settings, is turned away before training.
    other = Config(model=TINY_BASE.model, train=TrainConfig(**{**TINY_BASE.to_dict()["train"], "epochs": 3}))
    with pytest.raises(TuneError, match="different base settings"):
        tune(TINY_SPACE, base=other, study_dir=study_dir, trials=1, data=mnist, progress=False)


def _running_with_a_heartbeat(storage):
    """Numbers of the running trials whose worker has recorded a heartbeat. Only these can go
    stale: Optuna never fails a running trial with none, and a worker killed between creating a
    trial and its first beat (a window that widens on a loaded machine) leaves it running."""
    with storage.engine.connect() as db:
        rows = db.execute(sqlalchemy.text(
            "SELECT t.number FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
            "WHERE t.state = 'RUNNING'"))
        return {number for (number,) in rows}


def _kill_mid_trial(study_dir):
    """Start a worker and SIGKILL it in the middle of its third trial (or later), once that trial
    is training. Returns the study's trials as the kill left them, or None where a trial ended and
    the next began in the moment between the last look and the kill, so that the one killed had
    not yet drawn its settings or beaten (then the scenario is set up again; nothing is asserted
    on it)."""
    worker = start_worker(study_dir, trials=4)
    deadline = time.monotonic() + 300
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        # Opened as a worker opens it, under the schema lock: whichever of the two comes first
        # creates the tables and the other finds them whole, so watching cannot race the worker.
        watch = open_storage(storage_url(None, study_dir), heartbeat_interval=1)
        while True:
            assert time.monotonic() < deadline and worker.poll() is None, \
                worker.stdout.read() if worker.poll() is not None else "still running"
            time.sleep(0.3)
            try:
                trials = optuna.load_study(study_name="tiny-study", storage=watch).get_trials()
            except KeyError:  # the worker has not created the study yet
                continue
            if sum(t.state in FINISHED for t in trials) >= 2 and _training(trials, watch):
                break
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before = optuna.load_study(study_name="tiny-study", storage=watch).get_trials()
    running = {t.number for t in before if t.state == optuna.trial.TrialState.RUNNING}
    return before if running and running == _training(before, watch) else None


def _training(trials, storage):
    """Numbers of the running trials that are training: their settings drawn, their run folder
    named, and a heartbeat recorded (see _running_with_a_heartbeat)."""
    beating = _running_with_a_heartbeat(storage)
    return {t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING
            and t.params and "run" in t.user_attrs and t.number in beating}


def test_killed_worker_leaves_a_study_that_resumes(mnist, tmp_path):
    for attempt in range(3):
        study_dir = tmp_path / f"study{attempt}"
        before = _kill_mid_trial(study_dir)
        if before is not None:
            break
    else:
        pytest.fail("three kills in a row landed before the running trial's first heartbeat")
    storage = f"sqlite:///{study_dir / 'study.db'}"
    killed = [t for t in before if t.state == optuna.trial.TrialState.RUNNING]
    finished = sum(t.state in FINISHED for t in before)
    assert len(killed) == 1
    time.sleep(4)  # three missed heartbeats of one second: the trial is stale

    summary = tune(TINY_SPACE, base=TINY_BASE, study_dir=study_dir, study_name="tiny-study", trials=2,
                   data=mnist, heartbeat_interval=1, progress=False)
    after = {t.number: t for t in optuna.load_study(study_name="tiny-study", storage=storage).get_trials()}
    assert after[killed[0].number].state == optuna.trial.TrialState.FAIL
    retry = [t for t in after.values() if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retry) == 1 and retry[0].params == killed[0].params and retry[0].state in FINISHED
    assert sum(t.state in FINISHED for t in after.values()) == finished + 2
    assert sorted(after) == list(range(len(after)))  # nothing lost, nothing twice
    rows = {r["number"]: r for r in summary["rows"]}
    assert rows[retry[0].number]["note"].startswith(f"retry of #{killed[0].number}")


# --- two workers on PostgreSQL ------------------------------------------------------------------


def _postgres_bin():
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    versions = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a free loopback port, its files in a temporary folder."""

    def unavailable(reason):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is needed under CI (.ci/run installs it): {reason}")
        pytest.skip(reason)

    bin_dir = _postgres_bin()
    if bin_dir is None:
        unavailable("no PostgreSQL server (initdb, pg_ctl) here; apt-get install postgresql")
    root = tempfile.mkdtemp(prefix="mnistlab-pg-")
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            unavailable("running as root and there is no 'postgres' user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = (["runuser", "-u", "postgres", "--"] if shutil.which("runuser")
                   else ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"])

    def pg(*args):
        return subprocess.run([*as_user, *map(str, args)], capture_output=True, text=True, timeout=120)

    data, port = f"{root}/data", _free_port()
    made = pg(bin_dir / "initdb", "-D", data, "-U", "tuner", "--auth=trust", "-E", "UTF8", "--no-sync")
    started = made.returncode == 0 and pg(
        bin_dir / "pg_ctl", "-D", data, "-l", f"{root}/server.log", "-w", "-t", "60", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start").returncode == 0
    if not started:
        log = Path(root, "server.log")
        reason = (made.stderr or (log.read_text() if log.exists() else "")).strip().splitlines()[-1:]
        pg(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"PostgreSQL did not start: {' '.join(reason) or 'no reason given'}")
    try:
        yield f"postgresql://tuner@127.0.0.1:{port}/postgres"
    finally:
        pg(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgres_study(mnist, postgres_url, tmp_path):
    workers = [start_worker(tmp_path / f"worker{k}", trials=3, storage=postgres_url, heartbeat=60)
               for k in (1, 2)]
    outputs = []
    for w in workers:
        out, _ = w.communicate(timeout=600)
        outputs.append(out)
        assert w.returncode == 0, out
    trials = optuna.load_study(study_name="tiny-study", storage=postgres_url).get_trials()
    assert len(trials) == 6 and sorted(t.number for t in trials) == list(range(6))
    assert all(t.state in FINISHED for t in trials)
    by_worker = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t.number)
    assert sorted(len(v) for v in by_worker.values()) == [3, 3]
    for out in outputs:  # each printed its own three trials, out of three
        assert [line.split()[1] for line in out.splitlines() if line.startswith("trial ")] == ["1/3", "2/3", "3/3"]

    # The worker that finished last wrote the study's best; the other, refreshed, sees the same.
    best = optuna.load_study(study_name="tiny-study", storage=postgres_url).best_trial
    refreshed = [tune(TINY_SPACE, base=TINY_BASE, study_dir=tmp_path / f"worker{k}", storage=postgres_url,
                      study_name="tiny-study", trials=0, progress=False)["best"] for k in (1, 2)]
    assert refreshed[0] == refreshed[1] and refreshed[0]["number"] == best.number
    assert (tmp_path / "worker1" / "best.toml").read_text() == (tmp_path / "worker2" / "best.toml").read_text()
