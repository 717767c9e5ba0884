"""Training a task under a ``tf.distribute`` strategy: the global batch split over replicas, exact freezing
on every replica.

Build the model and start the optimizer inside ``strategy.scope()``: every variable is then mirrored. A step
(``paenet.training.make_train_step(..., strategy=strategy)``, which ``Trainer`` makes when created in the
scope) runs the task's forward and backward pass on each replica's share of the batch, the inner optimizer
all-reduces the gradients, and ``ExactFreezingOptimizer`` restores the entries the task does not own with a
plain assign of values that every replica computes alike (the kernel before the step), so finished tasks stay
bit-identical on every replica. Pruning and mask updates run between steps in cross-replica context, once:
``TaskPruner`` assigns each changed variable as a whole, which writes every replica.

BatchNorm normalises each replica's share with that share's statistics (as Keras's unsynchronised
BatchNormalization does under a strategy), and each replica updates its copy of the task's moving
averages from its share; the first replica's copy is the one saved.

Multi-worker training takes its cluster from ``TF_CONFIG`` as usual; make its strategy before any
TensorFlow op runs (it configures collective ops at startup). ``MultiWorkerMirroredStrategy`` broadcasts
every mirrored variable's initial value from worker 0 with ``CollectiveBcastSend``, which has no uint8
kernel; so the masked layers create their ownership masks in ``worker_local_variables``: one plain uint8
variable per worker, on its first device. Every worker computes the same masks (zeros at first, then
the same pruning decisions on the same mirrored kernels, or the same checkpoint), so they stay equal
without any collective, and a mask is uint8 in every checkpoint whatever the strategy. A value a worker
assigns from the host (a transplant, re-drawn weights) reaches its own replicas only: seed every worker
alike (``keras.utils.set_random_seed``) so that they all assign the same.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os

import tensorflow as tf
from tensorflow.python.distribute.numpy_dataset import SingleDevice

from paenet.config import DISTRIBUTIONS, UsageError



@functools.lru_cache(maxsize=None)
def make_strategy(distribution: str, devices: tuple | None = None) -> tf.distribute.Strategy:
    """The strategy for `distribution`: the default (one device), ``MirroredStrategy`` over `devices`
    (default: every GPU, else the CPU) or ``MultiWorkerMirroredStrategy`` (cluster from ``TF_CONFIG``).
    One per process and kind: strategies made anew would reuse the collective ops' instance keys with
    other shapes (and a multi-worker one can only be made once)."""
    if distribution == "none":
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices) if devices else None)
    if distribution == "multi_worker":
        check_tf_config()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"--distribution=multi_worker: TF_CONFIG does not describe a cluster: {e}") from None
    raise ValueError(f"--distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")


def check_tf_config() -> None:
    """Refuses, in one line, a ``TF_CONFIG`` that is not a JSON object with a ``cluster`` object and a
    ``task`` object (TensorFlow would fail with a traceback); an unset one is a single worker."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--distribution=multi_worker: TF_CONFIG is not valid JSON ({e})") from None
    if not (isinstance(tf_config, dict) and isinstance(tf_config.get("cluster", {}), dict)
            and isinstance(tf_config.get("task", {}), dict)):
        raise UsageError('--distribution=multi_worker: TF_CONFIG must be a JSON object like {"cluster": '
                         '{"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}')


@contextlib.contextmanager
def worker_local_variables():
    """Variables created in this context under a ``MultiWorkerMirroredStrategy`` are plain variables on
    the worker's first device, one per worker, not mirrored (so no collective broadcasts their initial
    value); under any other strategy the context changes nothing. The caller keeps them equal on every
    worker."""
    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    # The strategy's own path for a variable on one device (MirroredExtended._create_variable).
    device = SingleDevice(strategy.extended.worker_devices[0])
    with tf.variable_creator_scope(lambda next_creator, **kwargs: next_creator(colocate_with=device, **kwargs)):
        yield
