"""Foundation rows: masked vs plain Keras model (forward, train step) and the pruning update.

``masked_vs_plain_rows`` and ``prune_update_row`` measure any packable model; other benchmark modules
use them for their own models.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from paenet.benchmarks.references import reference_prune
from paenet.benchmarks.timing import Rows, compare_rates, row
from paenet.models import SmallCNN, TaskSpec, plain_small_cnn
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import claim_free_weights
from paenet.pruning import TaskPruner
from paenet.training import classification_loss, make_predict_fn, make_train_step

BATCH = 32
CLASSES = 10


def _models(quick: bool):
    size = 32 if quick else 96
    widths = (8, 16) if quick else (32, 64, 128, 256)
    model = SmallCNN(widths=widths, dense_units=256, input_shape=(size, size, 3),
                     tasks=[TaskSpec("bench", CLASSES)], name="bench_cnn").build_variables()
    claim_free_weights(model, 1)
    return model, plain_small_cnn(model, CLASSES), size


def plain_train_step(model, optimizer, jit_compile: bool = False):
    """A compiled train step of a plain Keras classifier: the reference for ``make_train_step``."""
    loss_fn = classification_loss()

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def masked_steps(model, task: int, jit_compile: bool = False) -> tuple:
    """Makers of task `task`'s compiled forward pass and train step (Adam, exact freezing), through XLA
    where `jit_compile`."""
    def train_step():
        return make_train_step(model, ExactFreezingOptimizer(keras.optimizers.Adam(1e-3)).start_task(model, task),
                               task, jit_compile=jit_compile)

    return lambda: make_predict_fn(model, task, jit_compile), train_step


def plain_steps(plain, jit_compile: bool = False) -> tuple:
    """Makers of a plain Keras model's compiled forward pass and train step (Adam), through XLA where
    `jit_compile`."""
    return (lambda: tf.function(lambda t: plain(t, training=False), jit_compile=jit_compile),
            lambda: plain_train_step(plain, keras.optimizers.Adam(1e-3), jit_compile))


def step_rows(ours: tuple, reference: tuple, x, y, timing: dict, names: tuple, config: str = "", wanted=None):
    """A forward row and a train-step row (`names`), in images/s on the batch (`x`, `y`), of the steps
    that `ours` makes against those `reference` makes (``masked_steps``, ``plain_steps``); only the rows
    in `wanted` (default: both) are made and measured."""
    wanted = names if wanted is None else wanted
    batch = int(x.shape[0])
    if names[0] in wanted:
        ours_fwd, ref_fwd = ours[0](), reference[0]()
        rates = compare_rates(lambda: ours_fwd(x).numpy(), lambda: ref_fwd(x).numpy(), batch, **timing)
        yield row(names[0], *rates, "images/s", config=config)
    if names[1] in wanted:
        ours_step, ref_step = ours[1](), reference[1]()
        rates = compare_rates(lambda: ours_step(x, y).numpy(), lambda: ref_step(x, y).numpy(), batch, **timing)
        yield row(names[1], *rates, "images/s", config=config + ", Adam")


def masked_vs_plain_rows(model, plain, x, y, timing: dict, names=("forward_masked_vs_plain",
                                                                   "train_step_masked_vs_plain"), config="",
                         task: int = 1, wanted=None, jit_compile: bool = False):
    """``step_rows`` of task `task` of `model` against its plain twin `plain`, both through XLA where
    `jit_compile`."""
    return step_rows(masked_steps(model, task, jit_compile), plain_steps(plain, jit_compile), x, y, timing, names,
                     config, wanted)


def timing_for(quick: bool) -> dict:
    return dict(repeats=2, calls=1, warmup=1) if quick else dict(repeats=7, calls=5, warmup=3)


def _masked_rows(quick: bool, wanted):
    model, plain, size = _models(quick)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, size, size, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, CLASSES, BATCH))
    yield from masked_vs_plain_rows(model, plain, x, y, timing_for(quick), wanted=wanted,
                                    config=f"SmallCNN{list(model.widths)} {size}px batch {BATCH}, fp32")


def _cpg_rows(quick: bool, wanted):
    """Task 2 of a SmallCNN learning CPG picks over task 1's half of every kernel (picks trained by their
    own Adam), against the plain twin."""
    model, _, size = _models(quick)
    cpg = model.rebuild(tasks=[TaskSpec("old", CLASSES), TaskSpec("bench", CLASSES)], pick_tasks=[2])
    rng = np.random.default_rng(1)
    for layer in cpg.masked_layers():
        layer.mask.assign(rng.integers(1, 3, layer.mask.shape).astype(np.uint8))
    x = tf.constant(rng.normal(size=(BATCH, size, size, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, CLASSES, BATCH))
    yield from masked_vs_plain_rows(cpg, plain_small_cnn(cpg, CLASSES), x, y, timing_for(quick), task=2,
                                    names=("forward_cpg_vs_plain", "train_step_cpg_vs_plain"), wanted=wanted,
                                    config=f"SmallCNN{list(model.widths)} {size}px batch {BATCH}, fp32, CPG task "
                                           "picking over task 1's half of each kernel")


def _prune_rows(quick: bool, wanted):
    model = SmallCNN(widths=(8, 16) if quick else (64, 128, 256, 512), dense_units=512,
                     input_shape=(32, 32, 3), tasks=[TaskSpec("bench", CLASSES)]).build_variables()
    claim_free_weights(model, 1)
    yield prune_update_row("prune_update", model, timing_for(quick))


GROUPS = (Rows(("forward_masked_vs_plain", "train_step_masked_vs_plain"), _masked_rows),
          Rows(("forward_cpg_vs_plain", "train_step_cpg_vs_plain"), _cpg_rows),
          Rows(("prune_update",), _prune_rows))


def prune_update_row(name: str, model, timing: dict, config: str = "", task: int = 1) -> dict:
    """One whole-model pruning update of task `task` from its phase start (its space: the weights it
    owns) to target 0.5, against the sort-based reference. Each call of either starts from the same
    state, restored before it and untimed: restoring is no part of an update and would cost both sides
    alike."""
    start = [(l, l.kernel.numpy(), l.mask.numpy()) for l in model.masked_layers()]
    pruner = TaskPruner(model, task)

    def restore():
        for layer, kernel, mask in start:
            layer.kernel.assign(kernel)
            layer.mask.assign(mask)

    ours, ref = compare_rates(lambda: pruner.prune(0.5), lambda: reference_prune(model, task, pruner.space, 0.5),
                              1, setup=restore, **timing)
    weights = sum(pruner.space.values())
    return row(name, ours, ref, "updates/s",
               config=f"{config}{weights} masked weights, phase start to target 0.5, restoring the start "
                      "untimed; reference: NumPy stable sort")
