"""The masked train step against what the device can do: its achieved FLOP/s over the FLOP/s of a large
float32 matmul measured in the same run on the same device (``train_step_vs_matmul_peak``).

The train step's FLOPs are ``TRAIN_FLOPS_PER_FORWARD`` (3) x the forward FLOPs per image counted from the
model's layer shapes (``paenet.evaluation.flops``) x the batch; the optimizer update and elementwise ops
are not counted, so the row is a lower bound on the work done.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from paenet.benchmarks.inception import CLASSES, batch, packed_model, describe, settings
from paenet.benchmarks.timing import Rows, compare_rates, measure_rows, row
from paenet.evaluation.flops import TRAIN_FLOPS_PER_FORWARD, forward_flops
from paenet.optim import ExactFreezingOptimizer
from paenet.training import make_train_step


def matmul_size(quick: bool) -> int:
    """Side of the square matmul: large enough for the device's peak, small enough for a quick call."""
    if quick:
        return 256
    return 8192 if tf.config.list_physical_devices("GPU") else 2048


def _peak_rows(quick: bool, wanted):
    s = settings(quick)
    model = packed_model(s, CLASSES)
    per_image = forward_flops(model, 1)
    x, y = batch(s)
    step = make_train_step(model, ExactFreezingOptimizer(keras.optimizers.Adam(1e-3)).start_task(model, 1), 1)
    n = matmul_size(quick)
    rng = np.random.default_rng(0)
    a, b = (tf.constant(rng.normal(size=(n, n)).astype(np.float32)) for _ in range(2))
    matmul = tf.function(lambda: tf.matmul(a, b)[0, 0])
    ours, ref = compare_rates(lambda: step(x, y).numpy(), lambda: matmul().numpy(), 1, **s["timing"])
    step_flops, matmul_flops = TRAIN_FLOPS_PER_FORWARD * per_image * s["batch"], 2 * n ** 3
    yield row("train_step_vs_matmul_peak", ours * step_flops, ref * matmul_flops, "FLOP/s",
              config=f"{describe(s)} {s['size']}px batch {s['batch']}, fp32, Adam, exact freezing: "
                     f"{per_image} forward FLOPs per image (conv and dense MACs x 2), train step counted as "
                     f"{TRAIN_FLOPS_PER_FORWARD} x forward; reference: float32 matmul {n}x{n} @ {n}x{n}")


GROUPS = (Rows(("train_step_vs_matmul_peak",), _peak_rows),)


def rows(quick: bool = False, only=None):
    return measure_rows(GROUPS, quick, only)
