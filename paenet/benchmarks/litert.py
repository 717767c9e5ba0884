"""LiteRT rows: the packed ``.tflite`` (``paenet.litert``) against the SavedModel and against one ``.tflite``
per task, and its int8 model against the float one.

The model is Inception-ResNet-v1 (FaceNet's blocks, 160 px) with three tasks sharing its weights as a
packed network does (each kernel entry owned by task 1, 2 or 3 at random; task 3 reads them all).

* ``litert_shared_vs_savedmodel``, ``litert_constants_vs_savedmodel``: images/s of task 3 through the
  LiteRT interpreter (shared / constants layout) against its SavedModel signature, batch 8.
* ``litert_size_vs_separate``: tasks per MB of the packed shared ``.tflite`` against three ``.tflite`` files,
  one per task (each its own network, as separate models are).
* ``litert_int8_vs_float_size``, ``litert_int8_vs_float_speed``: the int8 model (constants layout, calibrated
  on 8 random images per task) against the float constants model: tasks per MB, images/s of task 3.

Quick mode uses one block of each kind, a tiny width and input: it checks that every row runs.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf

from paenet.benchmarks.inception import describe, packed_model, settings
from paenet.benchmarks.timing import Rows, compare_rates, row

TASKS, CLASSES, BATCH = 3, 8, 8
NAMES = ("litert_shared_vs_savedmodel", "litert_constants_vs_savedmodel", "litert_size_vs_separate",
         "litert_int8_vs_float_size", "litert_int8_vs_float_speed")
MB = 1 << 20


def _packed(quick: bool):
    s = settings(quick)
    model = packed_model(s, CLASSES, tasks=TASKS)
    rng = np.random.default_rng(0)
    for layer in model.masked_layers():
        layer.mask.assign(rng.integers(1, TASKS + 1, size=layer.mask.shape).astype(np.uint8))
    return s, model


def _rows(quick: bool, wanted):
    from paenet import litert
    from paenet.export import export_savedmodel
    s, model = _packed(quick)
    tasks = list(range(1, TASKS + 1))
    timing = s["timing"]
    x = np.random.default_rng(1).uniform(-1, 1, (BATCH, s["size"], s["size"], 3)).astype(np.float32)
    config = f"{describe(s)} {s['size']}px, {TASKS} tasks sharing every kernel"
    flat = {layout: litert.convert(model, tasks, layout) for layout in litert.LAYOUTS}
    last = model.task_specs[-1].name
    with tempfile.TemporaryDirectory() as tmp:
        signature = tf.saved_model.load(export_savedmodel(model, os.path.join(tmp, "sm"), inputs=["float"])
                                        ).signatures[last]
        images = tf.constant(x)
        for layout in litert.LAYOUTS:
            name = f"litert_{layout}_vs_savedmodel"
            if name in wanted:
                runner = litert.interpreter(flat[layout]).get_signature_runner(last)
                ours, reference = compare_rates(lambda: runner(images=x), lambda: signature(images=images), BATCH,
                                                **timing)
                yield row(name, ours, reference, "images/s",
                          config=f"{config}; task {TASKS}, batch {BATCH}, LiteRT interpreter vs SavedModel")
    if "litert_size_vs_separate" in wanted:
        separate = sum(len(litert.convert(model, [t], "constants")) for t in tasks)
        yield row("litert_size_vs_separate", TASKS / (len(flat["shared"]) / MB), TASKS / (separate / MB), "tasks/MB",
                  config=f"{config}; packed shared .tflite {len(flat['shared'])} B vs one .tflite per task "
                         f"{separate} B")
    if {"litert_int8_vs_float_size", "litert_int8_vs_float_speed"} & set(wanted):
        sample = {t: np.random.default_rng(t).uniform(-1, 1, (8, s["size"], s["size"], 3)).astype(np.float32)
                  for t in tasks}
        int8 = litert.convert(model, tasks, "constants", sample)
        if "litert_int8_vs_float_size" in wanted:
            yield row("litert_int8_vs_float_size", TASKS / (len(int8) / MB), TASKS / (len(flat["constants"]) / MB),
                      "tasks/MB", config=f"{config}; int8 {len(int8)} B vs float {len(flat['constants'])} B, "
                                         "constants layout")
        if "litert_int8_vs_float_speed" in wanted:
            quantized = litert.interpreter(int8).get_signature_runner(last)
            plain = litert.interpreter(flat["constants"]).get_signature_runner(last)
            ours, reference = compare_rates(lambda: quantized(images=x), lambda: plain(images=x), BATCH, **timing)
            yield row("litert_int8_vs_float_speed", ours, reference, "images/s",
                      config=f"{config}; task {TASKS}, batch {BATCH}, int8 vs float constants layout")


GROUPS = (Rows(NAMES, _rows),)
