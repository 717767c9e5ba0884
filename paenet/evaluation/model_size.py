"""How big a packed model is: the paper's accounting and the real bytes on disk (DESIGN §7).

Paper accounting (PAE's model analyzer, fixed): task t's *module* is the kernel weights it owns x 4 B, plus
1 B per mask entry it owns, plus its task-specific variables (BatchNorm, biases, head) at their dtype's
size. The model that runs task t holds the modules of every task it reads (tasks 1..t when sharing is
cumulative; 1 and t when it is "first"); the packed model after task t holds modules 1..t. The comparison
is with t separate models, each all kernel weights x 4 B plus one task's specific variables. Unlike the
original, weights are found by their masks, not by the order of the variables, and every task's pruned
fraction comes from its record (the original wrote 0 for the face task). MB here is 2^20 bytes, as the
paper's figures (FaceNet's 23.5 M weights x 4 B = 89.6 MB).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MIB = 2 ** 20
KERNEL_BYTES = 4
MASK_BYTES = 1


def _variable_bytes(variables) -> int:
    return int(sum(np.prod(v.shape, dtype=np.int64) * np.dtype(v.dtype).itemsize for v in variables))


def task_modules(model, records=()) -> list[dict]:
    """One row per task of `model`: owned weights, module bytes and their parts, and the pruned fraction
    from its record (``None`` for a task without one)."""
    records = {r.task: r for r in records}
    rows = []
    for task, spec in enumerate(model.task_specs, start=1):
        owned = int(sum(np.count_nonzero(layer.mask.numpy() == task) for layer in model.masked_layers()))
        specific = _variable_bytes(model.task_variables(task))
        rows.append({"task": task, "name": spec.name, "owned_weights": owned,
                     "weight_bytes": owned * KERNEL_BYTES, "mask_bytes": owned * MASK_BYTES,
                     "specific_bytes": specific,
                     "module_bytes": owned * (KERNEL_BYTES + MASK_BYTES) + specific,
                     "pruned_fraction": pruned_fraction(records[task]) if task in records else None})
    return rows


def pruned_fraction(record) -> float:
    """Weights the task released / the size of its space when pruning began, over all layers (0.0 for a
    task that was never pruned)."""
    space = sum(record.space.values())
    released = sum(record.sparsity[key] * n for key, n in record.space.items())
    return released / space if space else 0.0


def paper_report(model, records=()) -> dict:
    """The paper's accounting for every task: its module, the model that runs it, the packed model after
    it, and the same number of separate models (see the module docstring)."""
    modules = task_modules(model, records)
    all_kernels = int(sum(np.prod(layer.kernel.shape) for layer in model.masked_layers()))
    for row in modules:
        t = row["task"]
        reads = range(1, t + 1) if model.sharing == "cumulative" else sorted({1, t})
        row["inference_bytes"] = sum(modules[k - 1]["module_bytes"] for k in reads)
        row["packed_bytes"] = sum(modules[k - 1]["module_bytes"] for k in range(1, t + 1))
        row["separate_bytes"] = sum(all_kernels * KERNEL_BYTES + modules[k - 1]["specific_bytes"]
                                    for k in range(1, t + 1))
        row["packed_vs_separate"] = row["packed_bytes"] / row["separate_bytes"]
        for key in ("module_bytes", "inference_bytes", "packed_bytes", "separate_bytes"):
            row[key.replace("_bytes", "_mb")] = row[key] / MIB
    return {"kernel_weights": all_kernels, "sharing": model.sharing, "tasks": modules}


def bytes_on_disk(*paths) -> int:
    """Total size of the files at `paths`, folders counted recursively (links not followed)."""
    total = 0
    for path in map(Path, paths):
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            for folder, _, names in os.walk(path):
                total += sum((Path(folder) / n).lstat().st_size for n in names)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return total
