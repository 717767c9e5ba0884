"""k-fold cross-validation over named folds (Adience's 5 official folds): test on each fold in turn,
train on the others, report every fold and the mean and standard deviation over folds."""
from __future__ import annotations

import numpy as np


def fold_splits(test_fold: int, num_folds: int = 5, prefix: str = "fold_") -> tuple[str, str]:
    """TFDS split expressions (train, test) for `test_fold`: e.g. ("fold_1+fold_2+fold_3+fold_4", "fold_0")."""
    if not 0 <= test_fold < num_folds:
        raise ValueError(f"test_fold must be in 0..{num_folds - 1}, got {test_fold}")
    train = "+".join(f"{prefix}{k}" for k in range(num_folds) if k != test_fold)
    return train, f"{prefix}{test_fold}"


def mean_std(values) -> tuple[float, float]:
    """Mean and population standard deviation (FaceNet's and the paper's convention)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std())


def cross_validate(run_fold, num_folds: int = 5) -> dict:
    """Calls ``run_fold(test_fold)`` for every fold; it trains on the other folds (selecting its model on
    validation data drawn from them, never on the test fold) and returns a dict of numbers measured on
    the test fold. Returns ``{"folds": [...], "<metric>_mean": ..., "<metric>_std": ...}``."""
    folds = [dict(run_fold(k)) for k in range(num_folds)]
    summary = {"folds": folds}
    for metric in folds[0]:
        summary[f"{metric}_mean"], summary[f"{metric}_std"] = mean_std([f[metric] for f in folds])
    return summary
