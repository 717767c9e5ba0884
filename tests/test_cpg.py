"""CPG's picking: learned, straight-through, fixed while pruning, private to its task, exact for the others."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from paenet.checkpoint import load_packing, save_packing
from paenet.compressed import load_compressed, save_compressed
from paenet.export import export_savedmodel
from paenet.layers import PICK_INIT
from paenet.models import TaskSpec
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import Packer
from paenet.records import verify
from paenet.training import Trainer
from tiny_models import tiny_cnn

RNG = np.random.default_rng(5)
X = RNG.normal(size=(16, 16, 16, 3)).astype(np.float32)
Y = RNG.integers(0, 3, 16)
DATA = tf.data.Dataset.from_tensors((X, Y))


def _model():
    return tiny_cnn(name="cpg")


def train(packer, steps):
    Trainer(packer, progress=False).train(DATA, steps)


def _outputs(model, task):
    return model(X, task=task, training=False).numpy()


def _packer_with_cpg_task(optimizer="adam"):
    """Task 1 trained and pruned by half; task 2 started with picks and trained 5 steps."""
    packer = Packer(_model(), optimizer)
    packer.start_task(TaskSpec("one", 3))
    train(packer, 5)
    packer.prune(0.5)
    packer.finish()
    before = {"digest": packer.records[0].digest, "out": _outputs(packer.model, 1)}
    packer.start_task(TaskSpec("two", 3), picks=True)
    return packer, before


def test_picks_start_at_cpg_init_and_gradients_reach_them():
    packer, _ = _packer_with_cpg_task()
    model = packer.model
    picks = model.pick_variables(2)
    assert model.pick_tasks == (2,) and len(picks) == len(model.masked_layers())
    assert all(np.all(p.numpy() == np.float32(PICK_INIT)) for p in picks)
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(Y, model(X, task=2, training=True))
    grads = tape.gradient(loss, picks)
    for layer, grad in zip(model.masked_layers(), grads):
        old = layer.pickable(2)
        assert np.any(grad.numpy()[old] != 0), layer.name
        assert np.all(grad.numpy()[~old] == 0), layer.name      # only old entries can be picked
    train(packer, 5)
    assert any(np.any(p.numpy() != np.float32(PICK_INIT)) for p in picks)


def test_picks_stay_fixed_while_the_task_is_pruned():
    packer, _ = _packer_with_cpg_task()
    train(packer, 5)
    packer.prune(0.3)
    fixed = [p.numpy().copy() for p in packer.model.pick_variables(2)]
    kernels = [l.kernel.numpy().copy() for l in packer.model.masked_layers()]
    train(packer, 5)
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(fixed, packer.model.pick_variables(2)))
    assert any(not np.array_equal(a, l.kernel.numpy()) for a, l in zip(kernels, packer.model.masked_layers()))


def test_unpicking_an_old_weight_changes_only_the_picking_task():
    packer, _ = _packer_with_cpg_task()
    model = packer.model
    before = {t: _outputs(model, t) for t in (1, 2)}
    layer = model.masked_layers()[0]
    picks = layer.pick_variable(2)
    old = np.argwhere(layer.pickable(2) & (np.abs(layer.kernel.numpy()) > 0))[0]
    value = picks.numpy()
    value[tuple(old)] = 0.0
    picks.assign(value)
    assert _outputs(model, 1).tobytes() == before[1].tobytes()
    assert not np.array_equal(_outputs(model, 2), before[2])


def test_earlier_tasks_stay_bit_identical_after_a_cpg_task_with_adamw_decay():
    optimizer = ExactFreezingOptimizer(keras.optimizers.AdamW(1e-2, weight_decay=0.1))
    packer, before = _packer_with_cpg_task(optimizer)
    train(packer, 10)
    packer.prune(0.5)
    train(packer, 3)
    record = packer.finish()
    assert record.method == "pae"           # the packer's default label; the template passes its method's name
    assert _outputs(packer.model, 1).tobytes() == before["out"].tobytes()
    assert packer.records[0].digest == before["digest"]
    verify(packer.model, packer.records)
    # Finished picks are stored as exact bits over the old entries only.
    for layer in packer.model.masked_layers():
        value = layer.pick_variable(2).numpy()
        assert set(np.unique(value)) <= {0.0, 1.0}
        assert not np.any(value[~layer.pickable(2)])


def test_a_finished_cpg_task_survives_save_load_and_both_exports(tmp_path):
    packer, _ = _packer_with_cpg_task()
    train(packer, 5)
    packer.prune(0.5)
    packer.finish()
    expected = {t: _outputs(packer.model, t) for t in (1, 2)}
    save_packing(packer, tmp_path / "packing")
    loaded = load_packing(tmp_path / "packing")
    assert loaded.model.pick_tasks == (2,)
    for t in (1, 2):
        assert _outputs(loaded.model, t).tobytes() == expected[t].tobytes()
    model, records = load_compressed(save_compressed(loaded.model, loaded.records, str(tmp_path / "c.npz")))
    for t in (1, 2):
        assert _outputs(model, t).tobytes() == expected[t].tobytes()
    served = tf.saved_model.load(export_savedmodel(loaded.model, str(tmp_path / "saved")))
    for t, name in ((1, "one"), (2, "two")):
        probabilities = served.signatures[name](images=tf.constant(X))["probabilities"].numpy()
        np.testing.assert_allclose(probabilities, tf.nn.softmax(expected[t]).numpy(), rtol=0, atol=1e-6)


def test_the_digest_covers_the_picks():
    packer, _ = _packer_with_cpg_task()
    train(packer, 5)
    record = packer.finish()
    layer = next(l for l in packer.model.masked_layers() if l.pick_bits(2).any())
    picks = layer.pick_variable(2).numpy()      # a raw assign: store_pick_bits refuses a finished task
    picks[tuple(np.argwhere(layer.pick_bits(2))[0])] = 0.0
    layer.pick_variable(2).assign(picks)
    with pytest.raises(Exception, match="digest mismatch"):
        verify(packer.model, [packer.records[0], record])


def test_model_size_counts_one_bit_per_entry_a_task_may_pick_from():
    from paenet.evaluation.model_size import paper_accounting
    packer, _ = _packer_with_cpg_task()
    train(packer, 2)
    packer.finish()
    rows = paper_accounting(packer.model, packer.records)
    pickable = sum(int(l.pickable(2).sum()) for l in packer.model.masked_layers())
    assert rows[0]["pick_bits"] == 0 and rows[1]["pick_bits"] == pickable > 0
    owned = rows[1]["owned_weights"]
    assert rows[1]["module_bytes"] == owned * 5 + rows[1]["specific_bytes"] + -(-pickable // 8)


def test_the_compressed_export_stores_one_bit_per_pickable_entry(tmp_path):
    packer, _ = _packer_with_cpg_task()
    train(packer, 3)
    packer.finish()
    path = save_compressed(packer.model, packer.records, str(tmp_path / "c.npz"))
    with np.load(path) as archive:
        picks = [k for k in archive.files if k.startswith("picks/")]
        assert not [k for k in archive.files if "pick_t" in k]          # no float picks stored
        for layer in packer.model.masked_layers():
            stored = archive[f"picks/{layer.name}/t2"] if f"picks/{layer.name}/t2" in picks else None
            assert stored is not None and stored.size == -(-int(layer.pickable(2).sum()) // 8)
    model, _ = load_compressed(path)
    for a, b in zip(model.pick_variables(2), packer.model.pick_variables(2)):
        assert a.numpy().tobytes() == b.numpy().tobytes()
