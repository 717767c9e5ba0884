"""Training under tf.distribute's MirroredStrategy on two logical CPU devices (set before TensorFlow starts,
so in a subprocess): the finished task stays bit-identical on every replica, the replicas stay equal
through training and a pruning step, and the trained kernels equal a single-device run's at the same
global batch within 1e-5."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from paenet.distribute import make_distributed_train_step, make_strategy, per_example_classification_loss
from paenet.models import SmallCNN, TaskSpec
from paenet.models.base import keyed_variables
from paenet.optim import ExactFreezingOptimizer
from paenet.pruning import TaskPruner

strategy = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
GLOBAL_BATCH, STEPS = 8, 3
rng = np.random.default_rng(0)
x = rng.normal(size=(GLOBAL_BATCH * STEPS, 16, 16, 3)).astype(np.float32)
y = rng.integers(0, 3, GLOBAL_BATCH * STEPS)

def build():
    return SmallCNN(widths=(4, 8), dense_units=8, input_shape=(16, 16, 3),
                    tasks=[TaskSpec("done", 3), TaskSpec("new", 3)]).build_variables()

single = build()
for layer in single.masked_layers():                    # task 1 finished: it owns about half of each layer
    layer.mask.assign(rng.integers(1, 3, layer.mask.shape).astype(np.uint8))
start = {k: v.numpy() for k, v in keyed_variables(single).items()}

with strategy.scope():
    model = build()
    for key, v in keyed_variables(model).items():
        v.assign(start[key])
    optimizer = ExactFreezingOptimizer(keras.optimizers.SGD(0.1, momentum=0.9)).start_task(model, 2)
step = make_distributed_train_step(strategy, model, optimizer, 2, GLOBAL_BATCH)


def replica_batches(context):
    """Replica r of 2 gets half r of every global batch (consecutive per-replica batches)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(context.get_per_replica_batch_size(GLOBAL_BATCH))
    return ds.shard(context.num_input_pipelines, context.input_pipeline_id)


batches = strategy.distribute_datasets_from_function(replica_batches)

# The single-device run: the same global batch, each replica's half through BatchNorm on its own.
reference = ExactFreezingOptimizer(keras.optimizers.SGD(0.1, momentum=0.9)).start_task(single, 2)
loss_fn = per_example_classification_loss()

@tf.function
def single_step(x, y):
    with tf.GradientTape() as tape:
        half = GLOBAL_BATCH // 2
        losses = [loss_fn(y[i:i + half], single(x[i:i + half], task=2, training=True)) for i in (0, half)]
        loss = tf.reduce_sum(tf.concat(losses, 0)) / GLOBAL_BATCH
    grads = tape.gradient(loss, reference.trainable_variables)
    reference.apply_gradients(zip(grads, reference.trainable_variables))

for batch in batches:
    step(*batch)
for i in range(STEPS):
    single_step(x[i * GLOBAL_BATCH:(i + 1) * GLOBAL_BATCH], y[i * GLOBAL_BATCH:(i + 1) * GLOBAL_BATCH])

def replicas(variable):
    """The variable's value on every replica of this worker."""
    value = variable.value
    return [np.asarray(c) for c in getattr(value, "values", [value])]

result = {"replicas": strategy.num_replicas_in_sync, "max_diff": 0.0, "moved": 0,
          "finished_identical": True, "replicas_equal": True, "released_zero": True}
kernels = {l.name: l.kernel for l in single.masked_layers()}
for layer in model.masked_layers():
    owned_by_1 = start[f"{layer.name}/mask"] == 1
    for value in replicas(layer.kernel):
        result["max_diff"] = max(result["max_diff"], float(np.abs(value - kernels[layer.name].numpy()).max()))
        result["moved"] += int(np.count_nonzero(value[~owned_by_1] != start[f"{layer.name}/kernel"][~owned_by_1]))

TaskPruner(model, 2).prune(0.5)                          # cross-replica context, once
for batch in batches:
    step(*batch)
for layer in model.masked_layers():
    kernels, masks = replicas(layer.kernel), replicas(layer.mask)
    owned_by_1 = start[f"{layer.name}/mask"] == 1
    result["replicas_equal"] &= all(k.tobytes() == kernels[0].tobytes() for k in kernels) and all(
        np.array_equal(m, masks[0]) for m in masks)
    result["finished_identical"] &= all(
        k[owned_by_1].tobytes() == start[f"{layer.name}/kernel"][owned_by_1].tobytes() for k in kernels)
    result["finished_identical"] &= bool(np.all(masks[0][owned_by_1] == 1))
    result["released_zero"] &= bool(np.count_nonzero(masks[0] == 0) > 0 and np.all(kernels[0][masks[0] == 0] == 0.0))
print("RESULT " + json.dumps(result))
'''


def check(result):
    assert result["replicas"] == 2
    assert result["moved"] > 0, "task 2 trained"
    assert result["max_diff"] <= 1e-5, result
    assert result["finished_identical"] and result["replicas_equal"] and result["released_zero"], result


def _result(process_output: str, stderr: str) -> dict:
    lines = [line for line in process_output.splitlines() if line.startswith("RESULT ")]
    assert lines, stderr[-3000:]
    return json.loads(lines[0][len("RESULT "):])


def test_mirrored_on_two_logical_devices():
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    check(_result(run.stdout, run.stderr))

