"""Seeded, stratified train/validation splits."""
from __future__ import annotations

import numpy as np


def stratified_split(labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), each sorted: every class gives round(val_fraction * n_c) samples to
    validation (at least 1 and at most n_c - 1 when it has 2 or more), chosen by `seed`."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_val = min(max(int(round(val_fraction * len(members))), 1), len(members) - 1)
        val.extend(rng.permutation(members)[:n_val])
    val = np.sort(np.asarray(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val
