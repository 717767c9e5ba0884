"""How big a packed model is, two ways (DESIGN §7): the paper's accounting and real bytes on disk.

Paper accounting (PAE's model analyzer, its bugs fixed): task t's *module* is the kernel weights it owns
x 4 B, plus 1 B per mask entry it owns, plus its task-specific variables (BatchNorm, biases, head) at the
shapes it computes with, plus, for a task that picks (CPG, Piggyback), 1 bit per entry it may pick from (every
entry of tasks 1..t-1 at its shapes), rounded up to whole bytes. The packed model after task k holds modules 1..k; the alternative is k separate
copies of the original network (before any expansion, as the paper's "three separate 89.6 MB models"),
copy t holding its kernel weights x 4 B plus task t's own variables (no mask). The model that *runs*
task t holds the modules it reads (tasks 1..t when sharing is cumulative, 1 and t when it is "first").
Owners are read from the masks, so nothing depends on the order of the variables (the original paired
each mask with a weight variable by visiting order, and counted weight values equal to the task id), and
each task's pruned fraction comes from its own record (the original printed 0 for the face task). MB is
2^20 bytes, as in the paper (FaceNet's 23.5 M weights x 4 B = 89.6 MB).
"""
from __future__ import annotations

import os

import numpy as np

from paenet.models.base import layer_key

MB = 2 ** 20
KERNEL_BYTES = 4
MASK_BYTES = 1


def ownership(model) -> dict[str, np.ndarray]:
    """Per masked layer (by key): how many kernel entries each owner holds, index 0 = free, t = task t."""
    return {layer_key(l): np.bincount(l.mask.numpy().ravel(), minlength=model.num_tasks + 1)
            for l in model.masked_layers()}


def pruned_fraction(record) -> float:
    """The share of its space (weights it could release when its pruning began) that a task released;
    0.0 for a task that was never pruned."""
    space = sum(record.space.values())
    return (space - sum(record.owned[k] for k in record.space)) / space if space else 0.0


def _nbytes(values) -> int:
    return int(sum(np.asarray(v).nbytes for v in values))


def paper_accounting(model, records=(), original_weights: int | None = None) -> list[dict]:
    """One row per task of `model` (see the module docstring), sizes in bytes:

    ``owned_weights``, ``pick_bits``, ``module_bytes`` (= ``owned_weights`` x 5 + ``specific_bytes`` +
    ``pick_bits`` / 8 rounded up), ``inference_bytes``
    (the modules task t reads), ``cumulative_bytes`` (modules 1..t), ``separate_bytes`` (t separate
    networks), ``ratio`` (cumulative / separate) and ``pruned_fraction`` (from the task's record; None
    for a task without one).

    `original_weights`: kernel weights of the network before any expansion (``Packer.base_parameters``);
    default: those of `model`.
    """
    owners = ownership(model)
    if original_weights is None:
        original_weights = sum(int(counts.sum()) for counts in owners.values())
    by_task = {r.task: r for r in records}
    rows, cumulative, separate = [], 0, 0
    for task, spec in enumerate(model.task_specs, start=1):
        owned = int(sum(counts[task] for counts in owners.values()))
        specific = _nbytes(model.task_values(task).values())
        pick_bits = (sum(int(l.pickable(task).sum()) for l in model.masked_layers())
                     if task in model.pick_tasks else 0)
        module = owned * (KERNEL_BYTES + MASK_BYTES) + specific + -(-pick_bits // 8)
        cumulative += module
        separate += original_weights * KERNEL_BYTES + specific
        record = by_task.get(task)
        rows.append({"task": task, "name": spec.name, "owned_weights": owned, "specific_bytes": specific,
                     "pick_bits": pick_bits,
                     "module_bytes": module, "cumulative_bytes": cumulative, "separate_bytes": separate,
                     "ratio": cumulative / separate,
                     "pruned_fraction": pruned_fraction(record) if record else None})
    for row in rows:
        reads = range(1, row["task"] + 1) if model.sharing == "cumulative" else sorted({1, row["task"]})
        row["inference_bytes"] = sum(rows[t - 1]["module_bytes"] for t in reads)
    return rows


def bytes_on_disk(*paths) -> int:
    """Total size in bytes of the files at `paths`, folders counted recursively (links not followed)."""
    total = 0
    for path in paths:
        if os.path.isfile(path):
            total += os.path.getsize(path)
        elif os.path.isdir(path):
            total += sum(os.lstat(os.path.join(folder, name)).st_size
                         for folder, _, names in os.walk(path) for name in names)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return total
