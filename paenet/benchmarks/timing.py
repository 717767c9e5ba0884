"""Side-by-side timing: ours and the reference, interleaved in one run so that both see the same machine."""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Callable, Iterable

import numpy as np
import tensorflow as tf


def device_name() -> str:
    """The accelerator's name when TensorFlow sees one, else the CPU model and core count."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    model = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {model}, {os.cpu_count()} cores"


def compare_rates(ours, reference, items_per_call: float, repeats: int = 5, calls: int = 3,
                  warmup: int = 2, setup=None) -> tuple[float, float]:
    """Items per second of `ours` and `reference` (zero-argument callables), each the median over
    `repeats` interleaved trials of `calls` calls after `warmup` calls. The trials alternate which of the
    two goes first (ours-reference, reference-ours, ...), so that neither always runs on the caches and
    clock the other leaves behind. `setup`, when given, runs before every call of either, untimed (e.g. to
    restore the state that each call starts from)."""
    setup = setup or (lambda: None)
    for fn in (ours, reference):
        for _ in range(warmup):
            setup()
            fn()
    times = {id(ours): [], id(reference): []}
    for trial in range(repeats):
        for fn in (ours, reference) if trial % 2 == 0 else (reference, ours):
            elapsed = 0.0
            for _ in range(calls):
                setup()
                start = time.perf_counter()
                fn()
                elapsed += time.perf_counter() - start
            times[id(fn)].append(elapsed / calls)
    return (items_per_call / float(np.median(times[id(ours)])),
            items_per_call / float(np.median(times[id(reference)])))


def rate(fn, items_per_call: float, repeats: int = 5, calls: int = 3, warmup: int = 2) -> float:
    """Items per second of `fn` alone (a row whose reference is a constant, such as a datasheet's)."""
    return compare_rates(fn, lambda: None, items_per_call, repeats, calls, warmup)[0]


def row(name: str, ours: float, reference: float, unit: str, **extra) -> dict:
    return {"name": name, "ours": round(ours, 4), "reference": round(reference, 4), "unit": unit,
            "ratio": round(ours / reference, 4), **extra}


@dataclasses.dataclass(frozen=True)
class Rows:
    """Rows measured together because they share their setup (a model, files): their `names`, and
    ``measure(quick, wanted)``, which yields the rows named in `wanted` (a subset of `names`) and
    measures nothing else."""

    names: tuple[str, ...]
    measure: Callable


def measure_rows(groups: Iterable[Rows], quick: bool = False, only=None):
    """The rows of `groups`, or only those named in `only`: a group none of whose rows is wanted is
    not set up at all."""
    for group in groups:
        wanted = [n for n in group.names if only is None or n in only]
        if wanted:
            yield from group.measure(quick, wanted)
