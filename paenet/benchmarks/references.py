"""Straightforward reference implementations that the benchmarks and tests compare against."""
from __future__ import annotations

import numpy as np


def reference_select_releases(kernel: np.ndarray, mask: np.ndarray, task: int, count: int) -> np.ndarray:
    """DESIGN §3's rule by a full stable sort: in task `task`'s space (mask 0 or task), released
    entries first, then by |w|, then by flat index; the first `count` are released."""
    flat_mask = mask.reshape(-1)
    candidates = np.flatnonzero((flat_mask == 0) | (flat_mask == task))
    magnitude = np.abs(kernel.reshape(-1)[candidates]).astype(np.float64)
    already = flat_mask[candidates] == 0
    order = np.lexsort((candidates, magnitude, ~already))
    release = np.zeros(flat_mask.shape, bool)
    release[candidates[order[:count]]] = True
    return release.reshape(kernel.shape)


def reference_prune(model, task: int, space: dict, sparsity: float) -> None:
    """Prunes `model`'s masked layers for `task` to `sparsity` with the sort-based rule."""
    from paenet.models.base import layer_key
    from paenet.pruning import release_count
    for layer in model.masked_layers():
        kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
        release = reference_select_releases(kernel, mask, task, release_count(sparsity, space[layer_key(layer)]))
        kernel[release] = 0.0
        mask[release] = 0
        layer.kernel.assign(kernel)
        layer.mask.assign(mask)
