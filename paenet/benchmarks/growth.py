"""Cost as the work grows: the newest task's forward pass and train step after 5 and 20 packed tasks and
after 1, 2 and 3 expansions, each against the 1-task, unexpanded Inception-ResNet-v1 of the same widths
(target ratio >= 0.95: what a task computes must not grow with the tasks and expansions before it), and
the pruning update of the whole network after 20 tasks (target: under 100 ms on CPU, >= 10 updates/s).

After N tasks every kernel weight has an owner drawn uniformly from tasks 1..N (the newest owns about
1/N of the network). After k expansions the model has k + 1 tasks: task i finished at the widths before
expansion i, and the newest task owns the weights the last expansion added and computes at full width.
"""
from __future__ import annotations

import functools

import numpy as np

from paenet.benchmarks.core import masked_steps, prune_update_row, step_rows
from paenet.benchmarks.expansion import EXPANSION, describe_expansion
from paenet.benchmarks.inception import CLASSES, batch, describe, packed_model, settings
from paenet.benchmarks.timing import Rows
from paenet.expansion import expand, propose_widths
from paenet.models import InceptionResnetV1, TaskSpec
from paenet.packing import claim_free_weights

TASK_COUNTS = (5, 20)
EXPANSIONS = (1, 2, 3)
PRUNE_TASKS = 20


def packed(s: dict, tasks: int, classes: int = CLASSES, seed: int = 0) -> InceptionResnetV1:
    """The model after `tasks` packed tasks: every weight owned by a task drawn uniformly from 1..tasks."""
    model = packed_model(s, classes, tasks)
    rng = np.random.default_rng(seed)
    for layer in model.masked_layers():
        layer.mask.assign(rng.integers(1, tasks + 1, layer.mask.shape, dtype=np.uint8))
    return model


def _names(what: str) -> tuple[str, str]:
    return f"forward_{what}", f"train_step_{what}"


def _expansion_label(k: int) -> str:
    return f"{k}_expansion{'s' if k > 1 else ''}_vs_0"


def _tasks_rows(tasks: int, quick: bool, wanted):
    s = settings(quick)
    x, y = batch(s)
    ours, reference = masked_steps(packed(s, tasks), tasks), masked_steps(packed_model(s, CLASSES), 1)
    yield from step_rows(ours, reference, x, y, s["timing"], _names(f"{tasks}_tasks_vs_1"), wanted=wanted,
                         config=f"{describe(s)} {s['size']}px batch {s['batch']}, float32: task {tasks} of {tasks} "
                                "(owners drawn uniformly) vs task 1 of a 1-task model")


def _expansion_rows(quick: bool, wanted):
    s = settings(quick)
    x, y = batch(s)
    model = packed_model(s, CLASSES)
    for k in range(1, max(k for k in EXPANSIONS if set(_names(_expansion_label(k))) & set(wanted)) + 1):
        model = model.with_tasks([*model.task_specs, TaskSpec(f"task{k + 1}", CLASSES)])
        model = expand(model, propose_widths(model, EXPANSION, k + 1), active_task=k + 1)
        claim_free_weights(model, k + 1)
        names = _names(_expansion_label(k))
        if set(names) & set(wanted):
            reference = packed_model(s, CLASSES, widths=model.widths)
            yield from step_rows(masked_steps(model, k + 1), masked_steps(reference, 1), x, y, s["timing"], names,
                                 wanted=wanted,
                                 config=f"{describe(s)} after {k} {describe_expansion()}, "
                                        f"{s['size']}px batch {s['batch']}, float32: task {k + 1} vs task 1 "
                                        "of a 1-task model built at the same widths")


def _prune_rows(quick: bool, wanted):
    s = settings(quick)
    timing = dict(repeats=1, calls=1, warmup=1) if quick else dict(repeats=5, calls=1, warmup=1)
    yield prune_update_row(f"prune_update_{PRUNE_TASKS}_tasks_inception_resnet_v1", packed(s, PRUNE_TASKS, 0),
                           timing, task=PRUNE_TASKS,
                           config=f"{describe(s)}, task {PRUNE_TASKS} of {PRUNE_TASKS} (owners drawn uniformly; "
                                  "target: >= 10 updates/s on CPU): ")


GROUPS = (*(Rows(_names(f"{n}_tasks_vs_1"), functools.partial(_tasks_rows, n)) for n in TASK_COUNTS),
          Rows(tuple(name for k in EXPANSIONS for name in _names(_expansion_label(k))), _expansion_rows),
          Rows((f"prune_update_{PRUNE_TASKS}_tasks_inception_resnet_v1",), _prune_rows))
