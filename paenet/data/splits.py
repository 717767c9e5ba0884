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


def group_split(groups, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), each sorted, with no group (e.g. a person) in both: groups in a seeded random
    order join validation until it holds round(val_fraction * n) samples or more; at least one group
    validates and at least one trains (an error with fewer than 2 groups)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    groups = np.asarray(groups)
    names, index = np.unique(groups, return_inverse=True)
    if len(names) < 2:
        raise ValueError(f"a split by group needs at least 2 groups, got {len(names)}")
    sizes = np.bincount(index, minlength=len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    target = int(round(val_fraction * len(groups)))
    taken = max(1, min(int(np.searchsorted(np.cumsum(sizes[order]), target)) + 1, len(names) - 1))
    val = np.flatnonzero(np.isin(index, order[:taken]))
    return np.setdiff1d(np.arange(len(groups)), val), val
