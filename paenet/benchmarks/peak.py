"""The masked train step against what the device can do: its achieved FLOP/s over the FLOP/s of a large
float32 matmul measured in the same run on the same device (``train_step_vs_matmul_peak``), and on a GPU
whose datasheet this module knows, its achieved FLOP/s in mixed_bfloat16 over the datasheet's dense bf16
tensor-core peak (``train_step_bf16_vs_datasheet_peak``, target >= 0.30; on other devices the row is left
out, with one line on stderr). On a GPU the batch is ``GPU_BATCH``: a GPU is fed batches that size.

The train step's FLOPs are ``TRAIN_FLOPS_PER_FORWARD`` (3) x the forward FLOPs per image counted from the
model's layer shapes (``paenet.evaluation.flops``) x the batch; the optimizer update and elementwise ops
are not counted, so the row is a lower bound on the work done.
"""
from __future__ import annotations

import sys

import keras
import numpy as np
import tensorflow as tf

from paenet.benchmarks.inception import CLASSES, batch, packed_model, describe, settings
from paenet.benchmarks.timing import Rows, compare_rates, device_name, rate, row
from paenet.evaluation.flops import TRAIN_FLOPS_PER_FORWARD, forward_flops
from paenet.optim import ExactFreezingOptimizer
from paenet.training import make_train_step


GPU_BATCH = 256
# Dense (no sparsity) bf16 tensor-core FLOP/s from NVIDIA's datasheets, by a part of TensorFlow's device
# name; the first match counts (so "H100 PCIe" before "H100").
DATASHEET_BF16 = (("H200 NVL", 835.5e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835.5e12),
                  ("H100", 989.4e12), ("A100", 312e12), ("L40S", 362.05e12), ("L40", 181.05e12),
                  ("L4", 121e12))


def datasheet_bf16_peak(device: str) -> float | None:
    """The datasheet's dense bf16 FLOP/s of GPU `device` (TensorFlow's name for it), or None if unknown."""
    return next((flops for part, flops in DATASHEET_BF16 if part in device), None)


def matmul_size(quick: bool) -> int:
    """Side of the square matmul: large enough for the device's peak, small enough for a quick call."""
    if quick:
        return 256
    return 8192 if tf.config.list_physical_devices("GPU") else 2048


def _setup(quick: bool) -> dict:
    s = settings(quick)
    if tf.config.list_physical_devices("GPU") and not quick:
        s["batch"] = GPU_BATCH
    return s


def _masked_step(s: dict):
    """Task 1's masked train step (Adam, exact freezing) under the global policy, its batch, and the
    FLOPs it does per call (``TRAIN_FLOPS_PER_FORWARD`` x forward FLOPs x batch) and per image forward."""
    model = packed_model(s, CLASSES)
    per_image = forward_flops(model, 1)
    x, y = batch(s)
    step = make_train_step(model, ExactFreezingOptimizer(keras.optimizers.Adam(1e-3)).start_task(model, 1), 1)
    return lambda: step(x, y).numpy(), TRAIN_FLOPS_PER_FORWARD * per_image * s["batch"], per_image


def _config(s: dict, policy: str, per_image: int) -> str:
    return (f"{describe(s)} {s['size']}px batch {s['batch']}, {policy}, Adam, exact freezing: {per_image} forward "
            f"FLOPs per image (conv and dense MACs x 2), train step counted as {TRAIN_FLOPS_PER_FORWARD} x forward")


def _peak_rows(quick: bool, wanted):
    s = _setup(quick)
    if "train_step_vs_matmul_peak" in wanted:
        step, step_flops, per_image = _masked_step(s)
        n = matmul_size(quick)
        rng = np.random.default_rng(0)
        a, b = (tf.constant(rng.normal(size=(n, n)).astype(np.float32)) for _ in range(2))
        matmul = tf.function(lambda: tf.matmul(a, b)[0, 0])
        ours, ref = compare_rates(step, lambda: matmul().numpy(), 1, **s["timing"])
        yield row("train_step_vs_matmul_peak", ours * step_flops, ref * 2 * n ** 3, "FLOP/s",
                  config=f"{_config(s, 'float32', per_image)}; reference: float32 matmul {n}x{n} @ {n}x{n}")
    if "train_step_bf16_vs_datasheet_peak" in wanted:
        device = device_name()
        peak = datasheet_bf16_peak(device) if tf.config.list_physical_devices("GPU") else None
        if peak is None:
            print(f"paenet.bench: train_step_bf16_vs_datasheet_peak left out: no datasheet bf16 peak known for "
                  f"{device}", file=sys.stderr)
            return
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            step, step_flops, per_image = _masked_step(s)
            ours = rate(step, 1, **s["timing"])
        finally:
            keras.mixed_precision.set_global_policy(previous)
        yield row("train_step_bf16_vs_datasheet_peak", ours * step_flops, peak, "FLOP/s",
                  config=f"{_config(s, 'mixed_bfloat16', per_image)}; reference: {device}'s datasheet dense "
                         f"bf16 peak, {peak / 1e12:g} TFLOP/s (target: ratio >= 0.30)")


GROUPS = (Rows(("train_step_vs_matmul_peak", "train_step_bf16_vs_datasheet_peak"), _peak_rows),)
