"""Training under tf.distribute, in subprocesses (the devices and the cluster are set before TensorFlow
starts): MirroredStrategy on two logical CPU devices, and MultiWorkerMirroredStrategy with two local
worker processes on 127.0.0.1. The finished task stays bit-identical on every replica and worker, the
replicas and workers stay equal through training and a pruning step, and the trained kernels equal a
single-device run's at the same global batch within 1e-5. Checkpoints restore under another number of
replicas, and an expansion under the strategy keeps the finished task bit-identical."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tiny_models import tiny_flags

REPO = Path(__file__).resolve().parents[1]
# The scripts import the tests' tiny networks (tests/tiny_models.py) as the tests do.
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}


TRAIN_BOTH = r'''
# Task 2 trained for STEPS global batches under `strategy`, and on one device (`single`, each half of a
# batch through BatchNorm on its own): the same data and start on every worker.
GLOBAL_BATCH, STEPS = 8, 3
rng = np.random.default_rng(0)                           # the same data and start on every worker
x = rng.normal(size=(GLOBAL_BATCH * STEPS, 16, 16, 3)).astype(np.float32)
y = rng.integers(0, 3, GLOBAL_BATCH * STEPS)


def build():
    return tiny_cnn(tasks=[TaskSpec("done", 3), TaskSpec("new", 3)]).build_variables()


keras.utils.set_random_seed(0)                          # the same start on every worker
single = build()
for layer in single.masked_layers():                    # task 1 finished: it owns about half of each layer
    layer.mask.assign(rng.integers(1, 3, layer.mask.shape).astype(np.uint8))
start = {k: v.numpy() for k, v in keyed_variables(single).items()}

with strategy.scope():
    model = build()
    for key, v in keyed_variables(model).items():
        v.assign(start[key])
    optimizer = ExactFreezingOptimizer(keras.optimizers.SGD(0.1, momentum=0.9)).start_task(model, 2)
step = make_train_step(model, optimizer, 2, strategy=strategy)


# Global batches (on every worker): replica r of 2 trains on half r of each.
batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
reference = ExactFreezingOptimizer(keras.optimizers.SGD(0.1, momentum=0.9)).start_task(single, 2)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)


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
'''

SCRIPT = r'''
import json
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from paenet.distribute import make_strategy
from paenet.training import make_train_step
from paenet.expansion import expand, uniform_widths
from paenet.layers.masked import leading
from paenet.models import TaskSpec
from paenet.models.base import keyed_variables
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import claim_free_weights
from paenet.pruning import TaskPruner
from tiny_models import tiny_cnn

strategy = make_strategy("mirrored", ("/cpu:0", "/cpu:1"))
'''

SCRIPT += TRAIN_BOTH + r'''
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

# A checkpoint written under the strategy restores under it and without one, and one written without a
# strategy restores under it, bit for bit (the first replica's BatchNorm statistics are the ones saved).
saved = {k: replicas(v)[0] for k, v in keyed_variables(model).items()}
plain = build()
with strategy.scope():
    mirrored, mirrored_from_plain = build(), build()
result["restored_equal"] = True
for copy, source in ((mirrored, model), (plain, model), (mirrored_from_plain, plain)):
    path = tf.train.Checkpoint(variables=source.checkpoint_variables()).write(f"{sys.argv[1]}/{copy.name}")
    tf.train.Checkpoint(variables=copy.checkpoint_variables()).read(path).assert_consumed()
    result["restored_equal"] &= all(
        r.tobytes() == saved[k].tobytes() for k, v in keyed_variables(copy).items() for r in replicas(v))

# Expansion under the strategy: task 2 claims the new weights and trains at the wider width on every
# replica; task 1 computes what it computed before, bit for bit.
finished_before = model(x[:GLOBAL_BATCH], task=1).numpy()
with strategy.scope():
    wide = expand(model, uniform_widths(model.width_config(), 2.0, 1), active_task=2)
    claim_free_weights(wide, 2)
    wide_optimizer = ExactFreezingOptimizer(keras.optimizers.SGD(0.1, momentum=0.9)).start_task(wide, 2)
wide_step = make_train_step(wide, wide_optimizer, 2, strategy=strategy)
for batch in batches:
    wide_step(*batch)
result["expanded_identical"] = wide(x[:GLOBAL_BATCH], task=1).numpy().tobytes() == finished_before.tobytes()
result["expanded_moved"] = 0
for layer in wide.masked_layers():
    old = saved[f"{layer.name}/kernel"]
    owned_by_1 = saved[f"{layer.name}/mask"] == 1
    for value in replicas(layer.kernel):
        value = value[leading(old.shape)]
        result["expanded_identical"] &= value[owned_by_1].tobytes() == old[owned_by_1].tobytes()
        result["expanded_moved"] += int(np.count_nonzero(value != old))
print("RESULT " + json.dumps(result))
'''

MULTI_WORKER_SCRIPT = r'''
import hashlib
import json
import sys
import numpy as np
import tensorflow as tf
from paenet.distribute import make_strategy
from paenet.training import make_train_step
strategy = make_strategy("multi_worker")
import keras
from paenet.models import TaskSpec
from paenet.models.base import keyed_variables
from paenet.optim import ExactFreezingOptimizer
from paenet.pruning import TaskPruner
from tiny_models import tiny_cnn

'''

MULTI_WORKER_SCRIPT += TRAIN_BOTH + r'''
result = {"worker": strategy.cluster_resolver.task_id, "replicas": strategy.num_replicas_in_sync,
          "max_diff": 0.0, "moved": 0, "finished_identical": True}
kernels = {l.name: l.kernel.numpy() for l in single.masked_layers()}
for layer in model.masked_layers():
    kernel, owned_by_1 = layer.kernel.numpy(), start[f"{layer.name}/mask"] == 1
    result["max_diff"] = max(result["max_diff"], float(np.abs(kernel - kernels[layer.name]).max()))
    result["moved"] += int(np.count_nonzero(kernel[~owned_by_1] != start[f"{layer.name}/kernel"][~owned_by_1]))

TaskPruner(model, 2).prune(0.5)                          # on every worker alike, in cross-replica context
for batch in batches:
    step(*batch)
digest = hashlib.sha256()                               # all but the BatchNorm statistics of each worker's share
for key, v in sorted(keyed_variables(model).items()):
    value = v.numpy()
    if "/moving_" not in key:
        digest.update(value.tobytes())
    if key.endswith("/kernel") and key.replace("/kernel", "/mask") in start:
        owned_by_1 = start[key.replace("/kernel", "/mask")] == 1
        result["finished_identical"] &= value[owned_by_1].tobytes() == start[key][owned_by_1].tobytes()
    if key.endswith("/mask"):
        result["mask_dtype"] = str(value.dtype)
        result["finished_identical"] &= bool(np.all(value[start[key] == 1] == 1))
        result["released"] = result.get("released", 0) + int(np.count_nonzero(value == 0))
result["digest"] = digest.hexdigest()

# A checkpoint written under the strategy restores under it, bit for bit.
path = tf.train.Checkpoint(variables=model.checkpoint_variables()).write(f"{sys.argv[1]}/worker{result['worker']}")
with strategy.scope():
    restored = build()
tf.train.Checkpoint(variables=restored.checkpoint_variables()).read(path).assert_consumed()
result["restored_equal"] = all(v.numpy().tobytes() == keyed_variables(model)[k].numpy().tobytes()
                               for k, v in keyed_variables(restored).items())
print("RESULT " + json.dumps(result))
'''


def check(result):
    assert result["replicas"] == 2
    assert result["moved"] > 0, "task 2 trained"
    assert result["max_diff"] <= 1e-5, result
    assert result["finished_identical"] and result["replicas_equal"] and result["released_zero"], result
    assert result["restored_equal"], result
    assert result["expanded_identical"] and result["expanded_moved"] > 0, result


def _result(process_output: str, stderr: str) -> dict:
    lines = [line for line in process_output.splitlines() if line.startswith("RESULT ")]
    assert lines, stderr[-3000:]
    return json.loads(lines[0][len("RESULT "):])


def test_mirrored_on_two_logical_devices(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=600, env=ENV)
    assert run.returncode == 0, run.stderr[-3000:]
    check(_result(run.stdout, run.stderr))



def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(command, returncode: int = 0, env=None) -> list[tuple[str, str]]:
    """Runs ``command(i)`` as worker i of a two-worker cluster on 127.0.0.1 (CPU only), with `env` added
    to the environment; their outputs, after checking that both exited with `returncode`."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = [subprocess.Popen(
        command(i), cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**ENV, "CUDA_VISIBLE_DEVICES": "",
             "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}), **(env or {})})
        for i in range(2)]
    try:
        outputs = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == returncode, err[-3000:]
    return outputs


def test_multi_worker_on_two_local_processes(tmp_path):
    outputs = _run_workers(lambda i: [sys.executable, "-c", MULTI_WORKER_SCRIPT, str(tmp_path)])
    results = [_result(out, err) for out, err in outputs]
    assert sorted(r["worker"] for r in results) == [0, 1]
    for r in results:
        assert r["replicas"] == 2 and r["moved"] > 0 and r["released"] > 0, r
        assert r["max_diff"] <= 1e-5, r
        assert r["finished_identical"] and r["restored_equal"] and r["mask_dtype"] == "uint8", r
    assert results[0]["digest"] == results[1]["digest"], "the workers' variables differ"


APP_SCRIPT = r'''
import dataclasses
import json
import os
import shutil
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
root = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import tiny_tasks  # registers tiny_a, tiny_b
from paenet import app
from paenet.config import PackingPlan, Settings
from paenet.monitor import WorkspaceObserver
from tiny_models import TINY


def settings(workspace, task):
    return Settings(workspace=f"{root}/{workspace}", task=task, **TINY["small_cnn"], batch_size=16, goal=0.0,
                    checkpoint_every=4, progress=False, distribution="mirrored",
                    plan=PackingPlan(train_steps=8, targets=(0.5,), steps_per_round=6, prune_steps=3, frequency=1))


def packing(workspace):
    reader = tf.train.load_checkpoint(f"{root}/{workspace}/packing/variables/variables")
    return {k: np.asarray(reader.get_tensor(k)).tobytes() for k in reader.get_variable_to_shape_map()
            if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


class Killed(BaseException):
    pass


try:
    app.pack(dataclasses.replace(settings("odd", "tiny_a"), batch_size=15))
    refused = None
except app.UsageError as e:
    refused = str(e)
made_odd = os.path.exists(f"{root}/odd/workspace.json")
assert app.pack(settings("straight", "tiny_a"))[0] == app.GOAL_MET
shutil.copytree(f"{root}/straight", f"{root}/killed")
first = packing("straight")
status, summary = app.pack(settings("straight", "tiny_b"))
expected = packing("straight")
original = WorkspaceObserver.on_step


def on_step(self, loop, loss):
    original(self, loop, loss)
    if self.global_step == 10:                      # in the pruning round, after the checkpoint at step 8
        raise Killed


WorkspaceObserver.on_step = on_step
try:
    app.pack(settings("killed", "tiny_b"))
except Killed:
    pass
WorkspaceObserver.on_step = original
resumed_status = app.pack(settings("killed", "tiny_b"))[0]
resumed = packing("killed")
task1 = [k for k in first if "_t1" in k]
print("RESULT " + json.dumps({
    "refused": refused, "made_odd": made_odd, "status": status, "resumed_status": resumed_status, "history": summary["history"], "task1_keys": len(task1),
    "task1_identical": all(expected[k] == first[k] for k in task1),
    "resumed_equal": sorted(k for k in expected if resumed.get(k) != expected[k]),
    "task2_moved": sum(expected[k] != first.get(k) for k in expected if "kernel" in k)}))
'''


def test_the_app_packs_under_mirrored_and_a_killed_run_resumes_to_the_same_end(tmp_path):
    """`--distribution=mirrored` on two logical CPUs: task 1 bit-identical after task 2, and a run killed
    in a pruning round, resumed under the strategy, ends bit-identical to the uninterrupted one."""
    run = subprocess.run([sys.executable, "-c", APP_SCRIPT, str(tmp_path), str(Path(__file__).parent)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = _result(run.stdout, run.stderr)
    assert result["status"] == 0 and result["resumed_status"] == 0, result
    assert [h[0] for h in result["history"]] == ["train", "prune 0.5"], result
    assert result["task1_keys"] > 0 and result["task1_identical"] and result["task2_moved"] > 0, result
    assert result["resumed_equal"] == [], result
    assert result["refused"] == "--distribution=mirrored: a batch of 15 does not split over 2 replicas", result
    assert not result["made_odd"], result



def test_the_app_packs_under_multi_worker_and_a_killed_run_resumes_to_the_same_end(tmp_path):
    """`python -m paenet.main --distribution=multi_worker`, one process per worker, each packing into its
    own copy of the workspace: both finish, and the workspaces hold the same network (all but each worker's
    BatchNorm statistics, which come from its own share of the batch). A run whose workers are all killed
    in the pruning round, after the checkpoint at step 4, resumes under the strategy to the same end."""
    args = ["--task_module=tiny_tasks", "--task_module=kill_at_step", "--task=tiny_a", "--goal=0.0",
            *tiny_flags("small_cnn"), "--batch_size=16", "--train_steps=4",
            "--targets=0.5", "--steps_per_round=4", "--prune_steps=2", "--prune_frequency=1", "--checkpoint_every=4",
            "--noprogress", "--distribution=multi_worker"]

    def command(run):
        return lambda i: [sys.executable, "-m", "paenet.main", f"--workspace={tmp_path / run / f'worker{i}'}", *args]

    def network(run, worker, statistics=True):
        import tensorflow as tf
        reader = tf.train.load_checkpoint(str(tmp_path / run / f"worker{worker}" / "packing" / "variables" /
                                              "variables"))
        return {k: reader.get_tensor(k).tobytes() for k in reader.get_variable_to_shape_map()
                if k != "_CHECKPOINTABLE_OBJECT_GRAPH" and (statistics or "moving_" not in k)}

    outputs = _run_workers(command("straight"))
    _run_workers(command("killed"), returncode=9, env={"PAENET_KILL_AT_STEP": "6"})
    resumed = _run_workers(command("killed"))
    values = [network("straight", i, statistics=False) for i in range(2)]
    assert values[0].keys() == values[1].keys() and len(values[0]) > 0
    assert [k for k in values[0] if values[0][k] != values[1][k]] == []
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs + resumed]
    assert summaries[0]["digest"] != "" and summaries[0]["chosen_sparsity"] == 0.5
    assert summaries[2]["digest"] == summaries[0]["digest"], (summaries[0], summaries[2])
    for i in range(2):
        straight, killed = network("straight", i), network("killed", i)
        assert [k for k in straight if killed.get(k) != straight[k]] == [], f"worker {i}"
