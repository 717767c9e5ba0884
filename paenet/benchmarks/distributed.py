"""``mirrored_scaling_efficiency``: the masked train step under ``MirroredStrategy`` on two devices (a global
batch of twice the per-device batch) against twice the rate of one device at the per-device batch; 1.0
is perfect scaling.

Where two GPUs exist the two devices are the first two GPUs. Elsewhere they are two logical devices that
split the one CPU: they share its cores, so the row then measures what the strategy costs (replication,
all-reduce, exact freezing on each replica) rather than a speed-up, and 0.5 means no overhead at all.
Logical devices must be set before TensorFlow starts, so the row is measured in a subprocess.
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import json
import subprocess
import sys

from paenet.benchmarks.inception import describe, settings
from paenet.benchmarks.timing import Rows, row

NAME = "mirrored_scaling_efficiency"
DEVICES = 2


def _devices() -> tuple[list[str], str]:
    """Two devices for the strategy, and what they are. Call before TensorFlow starts."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= DEVICES:
        return [f"/gpu:{i}" for i in range(DEVICES)], f"{DEVICES} GPUs"
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * DEVICES)
    return [f"/cpu:{i}" for i in range(DEVICES)], f"{DEVICES} logical devices sharing the CPU's cores"


def measure(quick: bool) -> dict:
    """Images/s of the two-device and of the one-device train step (run in a fresh process)."""
    devices, what = _devices()
    import keras

    from paenet.benchmarks.inception import CLASSES, batch, packed_model
    from paenet.benchmarks.timing import compare_rates
    from paenet.distribute import make_strategy
    from paenet.optim import ExactFreezingOptimizer
    from paenet.training import make_train_step

    s = settings(quick)
    x, y = batch({**s, "batch": DEVICES * s["batch"]})
    strategies = {"one": make_strategy("none"), "two": make_strategy("mirrored", tuple(devices))}
    steps = {}
    for key, strategy in strategies.items():
        with strategy.scope():
            model = packed_model(s, CLASSES)
            optimizer = ExactFreezingOptimizer(keras.optimizers.Adam(1e-3)).start_task(model, 1)
        steps[key] = make_train_step(model, optimizer, 1, strategy=strategy)
    # Replica r's share of the global batch, already on its device.
    shares = strategies["two"].experimental_distribute_values_from_function(
        lambda ctx: tuple(t[ctx.replica_id_in_sync_group * s["batch"]:][:s["batch"]] for t in (x, y)))
    one = (x[:s["batch"]], y[:s["batch"]])
    two_rate, one_rate = compare_rates(lambda: steps["two"](*shares).numpy(), lambda: steps["one"](*one).numpy(),
                                       1, **s["timing"])
    return {"two": two_rate * DEVICES * s["batch"], "one": one_rate * s["batch"], "devices": what,
            "config": f"{describe(s)} {s['size']}px, {s['batch']} images per device, fp32, Adam, exact freezing"}


def _scaling_rows(quick: bool, wanted):
    run = subprocess.run([sys.executable, "-m", "paenet.benchmarks.distributed", "--quick" if quick else "--full"],
                         capture_output=True, text=True, check=False)
    if run.returncode:
        raise RuntimeError(f"{NAME}: the measuring process failed:\n{run.stderr[-3000:]}")
    m = json.loads(run.stdout.strip().splitlines()[-1])
    yield row(NAME, m["two"], DEVICES * m["one"], "images/s",
              config=f"{m['config']}: MirroredStrategy on {m['devices']} (global batch {DEVICES} x the per-device "
                     f"batch) vs {DEVICES} x one device's rate; ratio = scaling efficiency (on one CPU, 0.5 is "
                     "no overhead: the devices share its cores)")


GROUPS = (Rows((NAME,), _scaling_rows),)


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1:] == ["--quick"])))
