"""Training plain and residual networks side by side (the degradation experiment).

- :mod:`~resviz.training.config`: the experiment (:class:`TrainConfig`) and its presets;
- :mod:`~resviz.training.sgd`: the one SGD step every trainer takes;
- :mod:`~resviz.training.trainer`: :class:`Trainer`, which steps and evaluates several models;
- :mod:`~resviz.training.results`: the curves and trained models it leaves, and their tables;
- :mod:`~resviz.training.distributed`: the same under ``torchrun``;
- :mod:`~resviz.training.jobs`: a background job with a heartbeat, for the app.
"""

from resviz.training.config import (
    DEFAULT_MODELS,
    PAPER_CIFAR10_TEST_ERROR,
    PRESETS,
    TrainConfig,
)
from resviz.training.jobs import HEARTBEAT_TIMEOUT, JobRunningError, TrainingJob, running_job, start_job
from resviz.training.results import TrainedModel, TrainingCurves, curve_rows, summary_rows
from resviz.training.trainer import Trainer, train

__all__ = [
    "DEFAULT_MODELS",
    "HEARTBEAT_TIMEOUT",
    "PAPER_CIFAR10_TEST_ERROR",
    "PRESETS",
    "JobRunningError",
    "TrainConfig",
    "TrainedModel",
    "Trainer",
    "TrainingCurves",
    "TrainingJob",
    "curve_rows",
    "running_job",
    "start_job",
    "summary_rows",
    "train",
]
