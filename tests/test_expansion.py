"""Expansion keeps every finished task bit-identical; the goal loop expands when it must, prunes to the
turning point on validation data, and rolls back a task whose goal cannot be met."""
import filecmp

import keras
import numpy as np
import pytest

from paenet.checkpoint import load_packing, save_packing
from paenet.data import real_images
from paenet.data.arrays import array_dataset
from paenet.data.preprocessing import fixed_standardization
from paenet.data.splits import stratified_split
from paenet.expansion import (ExpansionPolicy, expand, masked_parameters, saturation_widths,
                              uniform_widths)
from paenet.goal import Goal, PackingPlan, pack_task
from paenet.models import SmallCNN, TaskSpec, layer_key
from paenet.packing import Packer, claim_free_weights
from paenet.records import task_digest
from paenet.training import Trainer
from randomized import randomize

RNG = np.random.default_rng(5)


def _two_task_model(widths=(6, 10)):
    return randomize(SmallCNN(widths=widths, dense_units=8, input_shape=(16, 16, 3), name="m",
                              tasks=[TaskSpec("one", 3), TaskSpec("two", 4)]).build_variables(), RNG)


def _small_cnn_parameters(widths, dense_units, channels=3):
    sizes = (channels, *widths)
    return sum(9 * a * b for a, b in zip(sizes, sizes[1:])) + widths[-1] * dense_units


def test_expansion_keeps_old_tasks_bit_identical_and_frees_new_weights():
    model = _two_task_model()
    x = RNG.normal(size=(4, 16, 16, 3)).astype(np.float32)
    before = {t: (model(x, task=t).numpy().tobytes(), task_digest(model, t)) for t in (1, 2)}
    wide = expand(model, {"conv1": 9, "conv2": 13}, active_task=2)
    # Task 2 is the active one: it computes at the new width; task 1 keeps its shapes.
    assert wide(x, task=1).numpy().tobytes() == before[1][0]
    assert task_digest(wide, 1) == before[1][1]
    assert masked_parameters(wide) == _small_cnn_parameters((9, 13), 8)
    for old, new in zip(model.masked_layers(), wide.masked_layers()):
        lead = tuple(slice(0, d) for d in old.kernel.shape)
        assert new.kernel.numpy()[lead].tobytes() == old.kernel.numpy().tobytes()
        assert np.array_equal(new.mask.numpy()[lead], old.mask.numpy())
        grown = np.ones(new.mask.shape, bool)
        grown[lead] = False
        assert np.all(new.mask.numpy()[grown] == 0)
        assert new.task_shape(1) == tuple(old.kernel.shape) and new.task_shape(2) == tuple(new.kernel.shape)
    # Exactly what expansion needs to restore after a round trip through the config.
    clone = SmallCNN.from_config(wide.get_config()).build_variables()
    assert clone.conv2.task_shapes == wide.conv2.task_shapes


def test_a_widened_feature_layer_keeps_a_finished_task_bit_identical_through_a_reload(tmp_path):
    """With ``expand_features`` the dense layer every head reads widens: task 1, finished at 8 features,
    computes with its head's 8 rows as before, after a save and a load too; task 2 reads all of them."""
    keras.utils.set_random_seed(0)
    packer = Packer(SmallCNN(widths=(4,), dense_units=8, expand_features=True, input_shape=(16, 16, 3), name="m"),
                    keras.optimizers.Adam(1e-2))
    x = RNG.normal(size=(8, 16, 16, 3)).astype(np.float32)
    data = array_dataset(x, np.arange(8) % 3, 8)
    packer.start_task(TaskSpec("one", 3))
    Trainer(packer, progress=False).train(data, 2)
    record = packer.finish()
    before = packer.model(x, task=1).numpy().tobytes()
    head = packer.model.heads.kernel_t1.numpy()
    packer.start_task(TaskSpec("two", 3))
    packer.expand(ExpansionPolicy("uniform", ratio=4.0, cap=10.0, multiple=1))
    Trainer(packer, progress=False).train(data, 2)
    packer.finish()
    save_packing(packer, tmp_path / "p")
    for model in (packer.model, load_packing(tmp_path / "p").model):
        assert model.width_config() == {"conv1": 8, "dense": 16}
        assert model(x, task=1).numpy().tobytes() == before and task_digest(model, 1) == record.digest
        assert model.task_values(1)["heads/kernel_t1"].tobytes() == head.tobytes()
        assert model.task_values(2)["heads/kernel_t2"].shape == (16, 3) == model.heads.kernel_t1.shape


def test_expansion_refuses_narrowing_and_unknown_layers():
    model = _two_task_model()
    with pytest.raises(ValueError, match="cannot narrow"):
        expand(model, {"conv1": 5}, 2)
    with pytest.raises(ValueError, match="no expandable layers named \\['dense'\\]"):
        expand(model, {"dense": 20}, 2)


def test_uniform_and_saturation_policies():
    widths = {"conv1": 10, "conv2": 20}
    assert uniform_widths(widths, 1.21, 1) == {"conv1": 11, "conv2": 22}
    model = SmallCNN(widths=(10, 20), dense_units=8, input_shape=(16, 16, 3),
                     tasks=[TaskSpec("one", 2), TaskSpec("two", 2)]).build_variables()
    model.conv1.mask.assign(np.full(model.conv1.mask.shape, 2, np.uint8))   # all free for task 2
    model.conv2.mask.assign(np.full(model.conv2.mask.shape, 1, np.uint8))   # all taken by task 1
    proposal = saturation_widths(model, widths, 1.21, task=2, multiple=1)
    assert proposal == {"conv1": 10, "conv2": 23}
    with pytest.raises(ValueError):
        ExpansionPolicy("random")


def test_widened_layers_are_rounded_to_the_policy_multiple():
    """From 8 multiples up, to the nearest multiple (71 -> 72, 281 -> 280) and at least the first one above
    the width; narrower layers as the ratio says."""
    widths = {"a": 32, "b": 64, "c": 256, "d": 11}
    assert uniform_widths(widths, 1.2, 8) == {"a": 36, "b": 72, "c": 280, "d": 13}
    assert uniform_widths(widths, 1.2, 1) == {"a": 36, "b": 71, "c": 281, "d": 13}
    assert uniform_widths(widths, 1.2, 4) == {"a": 36, "b": 72, "c": 280, "d": 13}
    model = SmallCNN(widths=(64, 128), dense_units=8, input_shape=(16, 16, 3),
                     tasks=[TaskSpec("one", 2), TaskSpec("two", 2)]).build_variables()
    half = np.full(model.conv1.mask.shape, 2, np.uint8)
    half[..., :32] = 1
    model.conv1.mask.assign(half)                                            # half taken by task 1
    model.conv2.mask.assign(np.full(model.conv2.mask.shape, 1, np.uint8))   # all taken by task 1
    # A fifth of the filters a uniform round adds goes to conv1: of 7 + 13, 4; of 8 + 16, 5 (69 -> 72).
    assert saturation_widths(model, {"conv1": 64, "conv2": 128}, 1.21, task=2, multiple=1) == {"conv1": 68,
                                                                                               "conv2": 144}
    assert saturation_widths(model, {"conv1": 64, "conv2": 128}, 1.21, task=2, multiple=8) == {"conv1": 72,
                                                                                               "conv2": 144}
    assert ExpansionPolicy().multiple == 8


def _split(data, seed=0):
    train, val = stratified_split(data.labels, 0.25, seed=seed)
    return (array_dataset(data.images[train], data.labels[train], 32, training=True, seed=1),
            array_dataset(data.images[val], data.labels[val], 64), fixed_standardization(data.images[val]))


SIZE = 48
PLAN = PackingPlan(train_steps=100, targets=(0.3, 0.6), steps_per_round=40, prune_steps=20, frequency=5,
                   expansion=ExpansionPolicy("uniform", ratio=1.5, cap=3.0))


def _face_task_unpruned(data_dir):
    """Task 1 owns every weight (pruned not at all): task 2 starts with no free weight."""
    keras.utils.set_random_seed(0)
    packer = Packer(SmallCNN(widths=(8, 16, 32), dense_units=32, input_shape=(SIZE, SIZE, 3), name="grow"),
                    keras.optimizers.Adam(3e-3))
    train, val, batch = _split(real_images.face_nonface(data_dir, SIZE))
    packer.start_task(TaskSpec("face_nonface", 2))
    trainer = Trainer(packer, progress=False)
    trainer.train(train, 100)
    packer.finish({"val_accuracy": trainer.evaluate(val)})
    return packer, batch


@pytest.fixture(scope="module")
def grown(data_dir):
    packer, face_batch = _face_task_unpruned(data_dir)
    face = (packer.model(face_batch, task=1).numpy().tobytes(), packer.records[0].digest)
    train, val, _ = _split(real_images.celebs_identity(data_dir, SIZE))
    outcome = pack_task(packer, TaskSpec("celebs_identity", 5), train, val, Goal(absolute=0.45), PLAN)
    return packer, outcome, face_batch, face


def test_a_task_without_room_triggers_expansion_and_meets_its_goal(grown):
    packer, outcome, _, _ = grown
    print("history", outcome.history, "expansions", outcome.expansions)
    assert outcome.status == "goal_met"
    assert outcome.history[0][1] < outcome.goal, "the unexpanded network missed the goal"
    assert len(outcome.expansions) >= 1 and outcome.record.expansions == outcome.expansions
    assert outcome.val_accuracy >= outcome.goal
    last = outcome.expansions[-1]
    assert packer.model.width_config() == last["widths"]
    widths = [last["widths"][f"conv{i}"] for i in (1, 2, 3)]
    assert masked_parameters(packer.model) == last["parameters"] == _small_cnn_parameters(widths, 32)


def test_turning_point_is_chosen_on_validation(grown):
    _, outcome, _, _ = grown
    metrics, pruning = outcome.record.metrics, outcome.record.pruning
    meeting = [r["sparsity"] for r in pruning if r["val_accuracy"] >= outcome.goal]
    # Rounds run until the first one below the goal; the most-pruned round meeting it is kept.
    assert metrics["chosen_sparsity"] == (max(meeting) if meeting else 0.0)
    assert all(r["val_accuracy"] >= outcome.goal for r in pruning[:-1])
    sparsity = outcome.record.sparsity
    # Each layer within half an entry of it (a half rounds either way: 40.5 of 135 entries pruned is 41).
    assert all(abs(s - metrics["chosen_sparsity"]) <= 0.5 / outcome.record.space[k] + 1e-12 for k, s in sparsity.items())


def test_earlier_task_bit_identical_through_expansion_training_pruning_and_reload(grown, tmp_path):
    packer, _, face_batch, (predictions, digest) = grown
    assert packer.model(face_batch, task=1).numpy().tobytes() == predictions
    assert task_digest(packer.model, 1) == digest
    save_packing(packer, tmp_path / "grown")
    loaded = load_packing(tmp_path / "grown")
    assert loaded.model(face_batch, task=1).numpy().tobytes() == predictions
    assert loaded.model.width_config() == packer.model.width_config()
    assert [r.digest for r in loaded.records] == [r.digest for r in packer.records]


def test_an_unreachable_goal_rolls_the_task_back_byte_identically(data_dir, tmp_path):
    packer, _ = _face_task_unpruned(data_dir)
    save_packing(packer, tmp_path / "before")
    train, val, _ = _split(real_images.celebs_identity(data_dir, SIZE))
    plan = PackingPlan(train_steps=30, expansion=ExpansionPolicy("uniform", ratio=1.5, cap=2.0), on_miss="method")
    outcome = pack_task(packer, TaskSpec("celebs_identity", 5), train, val, Goal(absolute=0.99), plan)
    assert outcome.status == "goal_unreachable" and outcome.record is None and outcome.expansions
    assert packer.active_task is None and packer.model.num_tasks == 1 and len(packer.records) == 1
    save_packing(packer, tmp_path / "after")
    comparison = filecmp.dircmp(tmp_path / "before", tmp_path / "after")
    files = ["model.json", "state.json", "variables/variables.index"]
    assert filecmp.cmpfiles(tmp_path / "before", tmp_path / "after", files, shallow=False)[0] == files
    data = sorted(p.name for p in (tmp_path / "before" / "variables").glob("variables.data-*"))
    assert filecmp.cmpfiles(tmp_path / "before" / "variables", tmp_path / "after" / "variables", data,
                            shallow=False)[0] == data
    assert not comparison.left_only and not comparison.right_only


def test_goal_from_a_measured_baseline(data_dir):
    packer, face_batch = _face_task_unpruned(data_dir)
    face = packer.model(face_batch, task=1).numpy().tobytes()
    data = real_images.ckplus_identity(data_dir, SIZE)
    train, val, _ = _split(data)
    plan = PackingPlan(train_steps=60, targets=(0.5,), steps_per_round=20, prune_steps=10, frequency=5,
                       expansion=ExpansionPolicy(ratio=1.5, cap=3.0))
    outcome = pack_task(packer, TaskSpec("ckplus_identity", 10), train, val, Goal(margin=0.3), plan)
    print("ckplus: baseline (fine-tuned copy owning every weight)", outcome.baseline, "history", outcome.history)
    assert outcome.history[0] == ("baseline", outcome.baseline)
    chance = np.bincount(data.labels).max() / len(data.labels)
    assert outcome.baseline > chance + 0.2
    assert outcome.goal == pytest.approx(outcome.baseline - 0.3)
    assert outcome.status == "goal_met" and outcome.record.metrics["baseline"] == outcome.baseline
    # The baseline copy trained every weight; the packed network's task 1 never saw it.
    assert packer.model(face_batch, task=1).numpy().tobytes() == face
    with pytest.raises(ValueError):
        Goal(absolute=0.5, margin=0.1)


def test_claimed_expansion_weights_belong_to_the_active_task():
    model = _two_task_model()
    wide = expand(model, {"conv1": 8}, active_task=2)
    claim_free_weights(wide, 2)
    assert all(np.all(l.mask.numpy() > 0) for l in wide.masked_layers())
    assert {layer_key(l) for l in wide.masked_layers()} == {"conv1", "conv2", "dense"}
