"""The continual-learning benchmark's training loop against Keras's own: ``cl_train_step_vs_keras_fit``.

Ours is what ``python -m paenet.cl_bench`` runs for every step of a packing method: ``Trainer.train`` of the
active task of a ``Packer`` over permuted10's masked MLP (784-312-128, Adam, exact freezing), as many steps a
compiled call as the benchmark runs (``BenchConfig.steps_per_call``), fed by a permuted-pixel ``TaskData``
pipeline. The reference is plain Keras ``fit`` of the same MLP built from stock
layers with ``steps_per_execution``, on the same pipeline. Images are random: the rate does not depend on
them.
"""
from __future__ import annotations

import keras
import numpy as np

from paenet.benchmarks.core import timing_for
from paenet.benchmarks.timing import Rows, compare_rates, row
from paenet.cl.benchmark import BenchConfig
from paenet.cl.sequences import TaskData, permutations
from paenet.models import MLP, TaskSpec
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import Packer
from paenet.training import Trainer, classification_loss

BATCH = 128
CLASSES = 10


def plain_mlp(model: MLP, num_classes: int) -> keras.Model:
    """The same graph as `model` for one task, from stock Keras layers."""
    x = inputs = keras.Input((model.features,))
    for units in (*model.widths, model.dense_units):
        x = keras.layers.Dense(units, use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=model.bn_momentum, epsilon=1e-3, scale=False)(x))
    return keras.Model(inputs, keras.layers.Dense(num_classes, dtype="float32")(x), name=f"plain_{model.name}")


def _rows(quick: bool, wanted):
    steps = 10 if quick else 100
    per_execution = 5 if quick else 25
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20 * BATCH, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, CLASSES, 20 * BATCH).astype(np.int64)
    splits = {"train": images, "val": images[:BATCH], "test": images[:BATCH]}
    task = TaskData("bench", tuple(map(str, range(CLASSES))), (784,), splits,
                    {k: labels[: len(v)] for k, v in splits.items()}, permutation=permutations(1, 0)[0])
    data = task.dataset("train", BATCH, training=True, seed=1)
    widths = (16,) if quick else (312,)
    packer = Packer(MLP(widths=widths, dense_units=8 if quick else 128, name="bench_mlp"),
                    ExactFreezingOptimizer(keras.optimizers.Adam(1e-3)))
    packer.start_task(TaskSpec("bench", CLASSES))
    trainer = Trainer(packer, progress=False, steps_per_call=BenchConfig.steps_per_call)
    plain = plain_mlp(packer.model, CLASSES)
    plain.compile(keras.optimizers.Adam(1e-3), classification_loss(), steps_per_execution=per_execution)
    rates = compare_rates(lambda: trainer.train(data, steps),
                          lambda: plain.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False),
                          steps * BATCH, **timing_for(quick))
    yield row("cl_train_step_vs_keras_fit", *rates, "images/s",
              config=f"MLP 784-{widths[0]}-{packer.model.dense_units} batch {BATCH}, Adam, {steps} steps a call "
                     f"of Trainer.train, {trainer.steps_per_call} a compiled call, "
                     f"through the permuted-pixel pipeline; reference: Keras fit, steps_per_execution={per_execution}")


GROUPS = (Rows(("cl_train_step_vs_keras_fit",), _rows),)
