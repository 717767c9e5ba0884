"""The foundation's proof on real face images: three tasks packed one after another into one small
network (face vs non-face on lfw_subset/, the 10 CK+ subjects, the 5 celebrities), each trained, pruned
in rounds with retraining, and finished; earlier tasks stay bit-identical throughout."""
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from paenet.checkpoint import load_packing, save_packing
from paenet.data import real_images
from paenet.data.arrays import array_dataset
from paenet.data.preprocessing import fixed_standardization
from paenet.data.splits import stratified_split
from paenet.models import SmallCNN, TaskSpec, layer_key
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import Packer
from paenet.pruning import release_count
from paenet.records import IntegrityError, task_digest
from paenet.training import Trainer

SIZE = 64
TRAIN_STEPS = 150
ROUNDS = dict(targets=[0.3, 0.6], steps_per_round=40, prune_steps=20, frequency=5)
TASKS = [("face_nonface", real_images.face_nonface),
         ("ckplus_identity", real_images.ckplus_identity),
         ("celebs_identity", real_images.celebs_identity)]
# Validation accuracy each task must reach after pruning, against its majority-class rate.
FLOORS = {"face_nonface": 0.85, "ckplus_identity": 0.60, "celebs_identity": 0.40}

VARIANTS = {
    "adam_one_object": dict(optimizer=lambda: ExactFreezingOptimizer(keras.optimizers.Adam(3e-3))),
    "adamw_decay": dict(optimizer=lambda: keras.optimizers.AdamW(3e-3, weight_decay=1e-2)),
    "sgd_momentum": dict(optimizer=lambda: keras.optimizers.SGD(3e-2, momentum=0.9)),
    "adam_reinitialized_claims": dict(optimizer=lambda: keras.optimizers.Adam(3e-3), reinitialize=True),
}


def _state(model, task):
    """Everything task `task` computes with, as bytes: effective kernels and its own variables."""
    state = {layer_key(l): np.asarray(l.effective_kernel(task)).tobytes() for l in model.masked_layers()}
    state.update({v.path.split("/", 1)[1]: v.numpy().tobytes() for v in model.task_variables(task)})
    return state


def _pack(data_dir, variant):
    keras.utils.set_random_seed(0)
    spec = VARIANTS[variant]
    packer = Packer(SmallCNN(widths=(16, 32, 64), dense_units=64, dropout=0.2, input_shape=(SIZE, SIZE, 3),
                             name="three_tasks"),
                    spec["optimizer"](), reinitialize_claimed=spec.get("reinitialize", False))
    run = {"packer": packer, "finished": {}, "batches": {}, "chance": {}, "kernels_at_start": {}}
    for name, load in TASKS:
        data = load(data_dir, SIZE)
        train, val = stratified_split(data.labels, 0.25, seed=0)
        train_ds = array_dataset(data.images[train], data.labels[train], 32, training=True, seed=1)
        val_ds = array_dataset(data.images[val], data.labels[val], 64)
        run["kernels_at_start"][name] = {layer_key(l): (l.kernel.numpy(), l.mask.numpy())
                                         for l in packer.model.masked_layers() if l.built}
        task = packer.start_task(TaskSpec(name, data.num_classes))
        trainer = Trainer(packer, progress=False)
        trainer.train(train_ds, TRAIN_STEPS)
        trainer.prune_rounds(train_ds, validation=val_ds, **ROUNDS)
        chance = float(np.bincount(data.labels[val]).max() / len(val))
        record = packer.finish({"val_accuracy": trainer.evaluate(val_ds), "chance": chance})
        batch = fixed_standardization(data.images[val])
        run["batches"][task] = batch
        run["finished"][task] = {
            "record": record,
            "predictions": packer.model(batch, task=task).numpy().tobytes(),
            "state": _state(packer.model, task),
            "kernels": {layer_key(l): (l.kernel.numpy(), l.mask.numpy()) for l in packer.model.masked_layers()},
        }
    return run


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def packed(request, data_dir):
    return _pack(data_dir, request.param)


def test_earlier_tasks_stay_bit_identical(packed):
    model = packed["packer"].model
    assert model.num_tasks == 3
    for task in (1, 2):
        finished = packed["finished"][task]
        assert model(packed["batches"][task], task=task).numpy().tobytes() == finished["predictions"]
        assert _state(model, task) == finished["state"]
        assert task_digest(model, task) == finished["record"].digest


def test_pruning_hits_its_targets_and_moves_no_other_task(packed):
    final = ROUNDS["targets"][-1]
    for task, (name, _) in enumerate(TASKS, start=1):
        record = packed["finished"][task]["record"]
        start = packed["kernels_at_start"][name]
        for key, (kernel, mask) in packed["finished"][task]["kernels"].items():
            released = mask == 0
            assert released.sum() == release_count(final, record.space[key]), key
            assert record.sparsity[key] == released.sum() / record.space[key]
            assert np.all(kernel[released] == 0.0) and not np.signbit(kernel[released]).any()
            kernel0, mask0 = start.get(key, (kernel, np.zeros_like(mask)))
            older = (mask0 >= 1) & (mask0 < task)
            assert kernel[older].tobytes() == kernel0[older].tobytes() and np.array_equal(mask[older], mask0[older])
            assert np.all(mask[~older & ~released] == task)


def test_each_task_is_clearly_above_chance(packed):
    for task, (name, _) in enumerate(TASKS, start=1):
        metrics = packed["finished"][task]["record"].metrics
        print(f"{name}: val accuracy {metrics['val_accuracy']:.3f}, chance {metrics['chance']:.3f}, "
              f"floor {FLOORS[name]}, rounds {packed['finished'][task]['record'].pruning}")
        assert metrics["val_accuracy"] >= FLOORS[name] > metrics["chance"] + 0.15


@pytest.fixture(scope="module")
def saved(data_dir, tmp_path_factory):
    run = _pack(data_dir, "adam_one_object")
    path = tmp_path_factory.mktemp("packing") / "three"
    save_packing(run["packer"], path)
    return run, path


def test_save_load_round_trip_keeps_digests_and_predictions(saved):
    run, path = saved
    loaded = load_packing(path)
    assert [r.digest for r in loaded.records] == [r.digest for r in run["packer"].records]
    for task, batch in run["batches"].items():
        assert loaded.model(batch, task=task).numpy().tobytes() == run["finished"][task]["predictions"]


def _tampered_copy(path, tmp_path, change):
    """A copy of the saved packing whose variables were rewritten as a valid checkpoint after `change`."""
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    model = keras.saving.deserialize_keras_object(json.loads((copy / "model.json").read_text())).build_variables()
    ckpt = tf.train.Checkpoint(variables=model.checkpoint_variables())
    ckpt.read(str(copy / "variables" / "variables")).assert_consumed()
    change(model)
    ckpt.write(str(copy / "variables" / "variables"))
    return copy


def _first_owned(model, task):
    layer = model.masked_layers()[1]
    mask = layer.mask.numpy()
    return layer, np.unravel_index(np.flatnonzero(mask == task)[0], mask.shape)


def _nudge_weight(model):
    layer, index = _first_owned(model, 1)
    kernel = layer.kernel.numpy()
    kernel[index] = np.nextafter(kernel[index], np.float32(np.inf))   # one ulp
    layer.kernel.assign(kernel)


def _steal_ownership(model):
    layer, index = _first_owned(model, 1)
    mask = layer.mask.numpy()
    mask[index] = 3
    layer.mask.assign(mask)


def _nudge_batchnorm(model):
    model.conv2_bn.moving_mean_t2.assign(model.conv2_bn.moving_mean_t2.numpy() * np.float32(1.0001))


@pytest.mark.parametrize("change, task", [(_nudge_weight, 1), (_steal_ownership, 1), (_nudge_batchnorm, 2)])
def test_a_tampered_checkpoint_is_refused(saved, tmp_path, change, task):
    _, path = saved
    copy = _tampered_copy(path, tmp_path, change)
    with pytest.raises(IntegrityError, match=f"task {task} \\({TASKS[task - 1][0]}\\): digest mismatch"):
        load_packing(copy)


def test_a_corrupted_checkpoint_file_is_refused(saved, tmp_path):
    _, path = saved
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    data = next((copy / "variables").glob("variables.data-*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="variables: damaged, or not the checkpoint of this model"):
        load_packing(copy)
