"""Training: compile + fit + callbacks, writing a self-describing run folder.

    mnistlab train --model cnn --epochs 12   # or: from mnistlab.train import train; train(Config())

One job a module, each importing only those above it:
    devices   seeding, deterministic kernels, data parallel over N devices (tf.distribute)
    inputs    the train/validation split as model input; replay batches for fine-tuning
    recipe    optimizer, step-size schedule, loss, augmentation; the phases of a run
    resume    the checkpoint after every epoch, and continuing a killed run from it
    batches   training loss and accuracy every few batches (batches.csv), for a curve within epochs
    fit       train() and train_ensemble(): a run from claiming its folder to metrics.json
"""

# The names that were public when training was one module; the rest live in their modules.
from mnistlab.train.devices import data_parallel, seed_everything
from mnistlab.train.fit import RunProgress, RunResult, train, train_ensemble
from mnistlab.train.inputs import ReplayBatches, split_train_val
from mnistlab.train.recipe import LayerwiseAdam, Phase, augmentation, learning_rate, phases
from mnistlab.train.resume import EpochCheckpoint, ResumedEarlyStopping

__all__ = [
    "EpochCheckpoint",
    "LayerwiseAdam",
    "Phase",
    "ReplayBatches",
    "ResumedEarlyStopping",
    "RunProgress",
    "RunResult",
    "augmentation",
    "data_parallel",
    "learning_rate",
    "phases",
    "seed_everything",
    "split_train_val",
    "train",
    "train_ensemble",
]
