"""One harness over every registered method: earlier tasks stay bit-identical, a killed run resumes to the
same end as an uninterrupted one, and each method's own decisions (grow, pick, keep or roll back)."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from paenet import app, methods, tasks
from paenet.data.arrays import array_dataset
from paenet.evaluation.classification import top1_validator
from paenet.expansion import ExpansionPolicy
from paenet.goal import Goal, PackingPlan, pack_task
from paenet.models import TaskSpec
from paenet.monitor import WorkspaceObserver
from paenet.packing import Packer
from paenet.tasks.registry import TaskData, TaskDefinition
from tiny_models import TINY, one_block_cnn

SIZE = TINY["small_cnn"]["image_size"]


def _images(seed: int, classes: int, n: int = 96):
    """Learnable synthetic images: each class brightens its own third of the image."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = rng.normal(0, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
    for c in range(classes):
        images[labels == c, :, (c * SIZE) // classes:((c + 1) * SIZE) // classes] += 1.5
    return images, labels


def _synthetic_task(name: str, seed: int, classes: int) -> TaskDefinition:
    def load(context):
        images, labels = _images(seed, classes)
        val = array_dataset(images[64:], labels[64:], 32)
        return TaskData(train=array_dataset(images[:64], labels[:64], context.batch_size, training=True,
                                            seed=context.seed),
                        validate=top1_validator(val), sizes={"train": 64, "val": 32})
    return TaskDefinition(name, classes, f"synthetic, {classes} classes", load)


for _t in (_synthetic_task("synth_a", 1, 3), _synthetic_task("synth_b", 2, 4)):
    tasks.register(_t, replace=True)


def _settings(workspace, task, method, **changes):
    return dataclasses.replace(app.Settings(
        workspace=str(workspace), task=task, method=method, **TINY["small_cnn"],
        batch_size=16, goal=0.0, checkpoint_every=10, progress=False,
        plan=PackingPlan(train_steps=20, targets=(0.5,), steps_per_round=10, prune_steps=5, frequency=5)), **changes)


def _packing(workspace) -> dict:
    path = Path(workspace) / "packing"
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    values = {k: np.asarray(reader.get_tensor(k)).tobytes() for k in reader.get_variable_to_shape_map()
              if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    return {"variables": values, "state": json.loads((path / "state.json").read_text())["records"]}


class _Killed(Exception):
    pass


@pytest.mark.parametrize("method", sorted(methods.PACKING_METHODS))
def test_every_method_keeps_earlier_tasks_exact_and_resumes_after_a_kill(method, tmp_path, monkeypatch):
    # Task 2 trains 20 steps, then a method that prunes runs a round of 10: killed in each, or twice in training.
    _exact_and_resumable(tmp_path, monkeypatch, method, (15, 25) if methods.get_method(method).prunes else (5, 15))


def test_the_training_recipe_keeps_earlier_tasks_exact_and_resumes_after_a_kill(tmp_path, monkeypatch):
    """Validation every 5 steps with plateau decay and L2 on the owned entries: killed right after the
    checkpoint at step 10, before that step's validation, and in a pruning round."""
    recipe = PackingPlan(train_steps=20, targets=(0.5,), steps_per_round=10, prune_steps=5, frequency=5,
                         eval_every=5, plateau_patience=1, l2=5e-4)
    _exact_and_resumable(tmp_path, monkeypatch, "pae", (10, 25), plan=recipe)


def test_the_rule_at_the_cap_keeps_earlier_tasks_exact_and_resumes_after_a_kill(tmp_path, monkeypatch):
    """Goal 1.0, missed: both tasks go through the reserve rounds (0.3, 0.5, then 0.6); killed in training
    and in the second reserve round, then resumed: the same end."""
    plan = PackingPlan(train_steps=20, targets=(0.3, 0.5), steps_per_round=10, prune_steps=5, frequency=5,
                       on_miss="reserve", reserve=0.6)
    _exact_and_resumable(tmp_path, monkeypatch, "packnet", (15, 35), plan=plan, goal=1.0)
    record = _packing(tmp_path / "straight")["state"][1]
    assert record["metrics"]["chosen_sparsity"] == 0.6 and [r["sparsity"] for r in record["pruning"]] == [0.3, 0.5, 0.6]


def test_cpg_resumes_after_kills_in_its_restart_after_growth_and_its_retraining(tmp_path, monkeypatch):
    """Goal 1.0, missed. Task 1 trains, grows twice (each time from its start, which the checkpoint keeps)
    up to the cap and goes through the reserve rounds; task 2, which picks, goes through them and retrains
    its re-initialised picks. Task 1 killed after its first growth, task 2 in its retraining, each resumed:
    the same end."""
    plan = PackingPlan(train_steps=20, targets=(0.3,), steps_per_round=10, prune_steps=5, frequency=5,
                       on_miss="reserve", reserve=0.5, expansion=ExpansionPolicy("uniform", 1.3, 2.0, 1))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    summaries = [app.pack(_settings(straight, task, "cpg", plan=plan, goal=1.0))[1] for task in ("synth_a", "synth_b")]
    assert len(summaries[0]["expansions"]) == 2 and any(h[0].startswith("retrain") for h in summaries[1]["history"])
    for task, stop_at in (("synth_a", 25), ("synth_b", 42)):
        settings = _settings(killed, task, "cpg", plan=plan, goal=1.0, checkpoint_every=2)
        _kill_at(monkeypatch, stop_at, settings)
        assert app.pack(settings)[0] == app.GOAL_MET
    assert _packing(killed) == _packing(straight)


def _kill_at(monkeypatch, stop_at, settings):
    """Runs ``app.pack(settings)`` until it is killed right after training step `stop_at` (and its checkpoint)."""
    original = WorkspaceObserver.on_step

    def on_step(self, loop, loss):
        original(self, loop, loss)
        if self.global_step == stop_at:
            raise _Killed
    monkeypatch.setattr(WorkspaceObserver, "on_step", on_step)
    with pytest.raises(_Killed):
        app.pack(settings)
    monkeypatch.undo()


def _exact_and_resumable(tmp_path, monkeypatch, method, stops, **changes):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert app.pack(_settings(straight, "synth_a", method, **changes))[0] == app.GOAL_MET
    shutil.copytree(straight, killed)
    first = _packing(straight)
    assert app.pack(_settings(straight, "synth_b", method, **changes))[0] == app.GOAL_MET
    expected = _packing(straight)

    # Task 1 is bit-identical after task 2, whatever the method.
    task1 = {k: v for k, v in first["variables"].items() if "_t1" in k}
    assert task1 and all(expected["variables"][k] == v for k, v in task1.items())
    assert expected["state"][0] == first["state"][0]
    assert expected["state"][1]["method"] == method

    # Killed twice (in training, then in a pruning round), then resumed: the same end.
    for stop_at in stops:
        _kill_at(monkeypatch, stop_at, _settings(killed, "synth_b", method, **changes))
    assert app.pack(_settings(killed, "synth_b", method, **changes))[0] == app.GOAL_MET
    resumed = _packing(killed)
    assert resumed["state"] == expected["state"]
    assert [k for k, v in expected["variables"].items() if resumed["variables"][k] != v] == []


def _unreachable(method, on_miss=None, plan_miss="method", reserve=0.5):
    """Task 2 with random labels and a goal of 1.0: no width reaches it."""
    packer = Packer(one_block_cnn(SIZE, name="m"))
    images, labels = _images(1, 3)
    data = array_dataset(images, labels, 32, training=True, seed=0)
    plan = PackingPlan(train_steps=3, targets=(0.3, 0.5, 0.9), steps_per_round=2, prune_steps=1, frequency=1,
                       expansion=ExpansionPolicy("uniform", 1.9, 2.0), on_miss=plan_miss, reserve=reserve)
    pack_task(packer, TaskSpec("one", 3), data, array_dataset(images, labels, 32), Goal(absolute=0.0), plan)
    digest = packer.records[0].digest
    noise = np.random.default_rng(3).integers(0, 3, len(labels))
    outcome = pack_task(packer, TaskSpec("two", 3), array_dataset(images, noise, 32, training=True, seed=0),
                        array_dataset(images, noise, 32), Goal(absolute=1.0), plan, method=method, on_miss=on_miss)
    assert packer.records[0].digest == digest
    return packer, outcome


def test_packnet_never_grows_and_keeps_a_task_that_misses_its_goal_unpruned():
    packer, outcome = _unreachable("packnet")
    assert outcome.status == "below_goal" and outcome.expansions == []
    assert outcome.record.metrics["chosen_sparsity"] == 0.0 and outcome.record.method == "packnet"
    assert len(packer.records) == 2 and packer.model.pick_tasks == ()


def test_pae_expands_to_the_cap_then_rolls_the_task_back():
    packer, outcome = _unreachable("pae")
    assert outcome.status == "goal_unreachable" and len(outcome.expansions) >= 1
    assert len(packer.records) == 1 and packer.model.num_tasks == 1


def test_cpg_picks_and_grows_and_can_keep_what_it_cannot_improve():
    packer, outcome = _unreachable("cpg", on_miss="keep")
    assert outcome.status == "below_goal" and len(outcome.expansions) >= 1 and outcome.record.method == "cpg"
    assert packer.model.pick_tasks == (2,)


@pytest.mark.parametrize("method", ["packnet", "pae", "cpg"])
def test_every_method_finishes_a_task_that_misses_at_its_widest_pruned_to_the_reserve(method):
    """CPG's rule at the cap: never dropped, never kept whole; it keeps at most 1 - reserve of what it
    claimed (one weight per layer of rounding), after rounds below the reserve and one to it."""
    packer, outcome = _unreachable(method, plan_miss="reserve", reserve=0.6)
    assert outcome.status == "below_goal" and len(packer.records) == 2
    record = outcome.record
    assert record.metrics["chosen_sparsity"] == 0.6 and [r["sparsity"] for r in record.pruning] == [0.3, 0.5, 0.6]
    assert bool(outcome.expansions) == (method != "packnet")
    for key, space in record.space.items():
        assert record.owned[key] <= 0.4 * space + 1 and record.owned[key] >= 0.4 * space - 1
    masks = [layer.mask.numpy() for layer in packer.model.masked_layers()]
    assert sum(int((m == 0).sum()) for m in masks) >= 0.6 * sum(record.space.values()) - len(masks)


def test_a_workspace_refuses_a_method_that_needs_another_sharing(tmp_path):
    workspace = tmp_path / "ws"
    assert app.pack(_settings(workspace, "synth_a", "pae", sharing="first"))[0] == app.GOAL_MET
    with pytest.raises(app.UsageError, match="--method=cpg cannot pack into this workspace"):
        app.pack(_settings(workspace, "synth_b", "cpg"))
    for name in ("nope", "independent", "finetune"):     # the benchmark's baselines pack no shared network
        with pytest.raises(app.UsageError, match=f"--method={name}: must be one of"):
            app.pack(_settings(workspace, "synth_b", name))


def test_piggyback_picks_over_frozen_weights_owns_none_and_costs_one_bit_a_weight():
    """Task 2 learns only its picks, BatchNorm, biases and head: every kernel entry and mask bit-identical,
    no weight claimed (the free ones stay free), its picks moved from their start, one bit per pickable weight."""
    from paenet.evaluation.model_size import paper_accounting
    from paenet.layers.masked import PICK_INIT
    packer = Packer(one_block_cnn(SIZE, name="m"))
    images, labels = _images(1, 3)
    plan = PackingPlan(train_steps=6, targets=(0.5,), steps_per_round=2, prune_steps=1, frequency=1)
    pack_task(packer, TaskSpec("one", 3), array_dataset(images, labels, 32, training=True, seed=0),
              array_dataset(images, labels, 32), Goal(absolute=0.0), plan, method="packnet")
    kernels = [(l.kernel.numpy().tobytes(), l.mask.numpy().tobytes()) for l in packer.model.masked_layers()]
    free = sum(int((l.mask.numpy() == 0).sum()) for l in packer.model.masked_layers())
    assert free > 0
    outcome = pack_task(packer, TaskSpec("two", 3), array_dataset(images, labels, 32, training=True, seed=1),
                        array_dataset(images, labels, 32), Goal(absolute=0.0), plan, method="piggyback")
    model = packer.model
    assert outcome.record.method == "piggyback" and model.pick_tasks == (2,)
    assert sum(outcome.record.owned.values()) == 0 and outcome.record.metrics["chosen_sparsity"] == 0.0
    assert [(l.kernel.numpy().tobytes(), l.mask.numpy().tobytes()) for l in model.masked_layers()] == kernels
    assert any((l.pick_variable(2).numpy() != np.float32(PICK_INIT)).any() for l in model.masked_layers())
    rows = paper_accounting(model, packer.records)
    pickable = sum(int(((l.mask.numpy() >= 1) & (l.mask.numpy() <= 1)).sum()) for l in model.masked_layers())
    assert rows[1]["owned_weights"] == 0 and rows[1]["pick_bits"] == pickable == rows[0]["owned_weights"]
    assert rows[1]["module_bytes"] == rows[1]["specific_bytes"] + -(-pickable // 8)


def test_finetune_trains_every_weight_in_a_packer_that_freezes_nothing():
    """Fine-tuning through the template: task 1 claims every weight, task 2 owns none yet trains them all
    (task 1's kernel entries move: its digest no longer matches, by design), each task keeps its own
    BatchNorm and head (task 1's stay bit-identical), nothing is frozen; a packing method's packer is a
    plain ``Packer``."""
    from paenet.packing import FineTuningPacker
    from paenet.records import task_digest
    finetune = methods.get_method("finetune")
    assert "finetune" not in methods.PACKING_METHODS and not finetune.freezes
    assert type(methods.get_method("pae").packer(one_block_cnn(SIZE), "adam")) is Packer
    packer = finetune.packer(one_block_cnn(SIZE, name="m"), "adam")
    assert isinstance(packer, FineTuningPacker)
    images, labels = _images(1, 3)
    plan = PackingPlan(train_steps=6, targets=(0.5,), steps_per_round=2, prune_steps=1, frequency=1, eval_every=3)
    for name, seed in (("one", 0), ("two", 1)):
        outcome = pack_task(packer, TaskSpec(name, 3), array_dataset(images, labels, 32, training=True, seed=seed),
                            array_dataset(images, labels, 32), Goal(absolute=0.0), plan, method=finetune,
                            progress=False)
        assert outcome.status == "goal_met" and outcome.record.method == "finetune"
        assert outcome.record.metrics["chosen_sparsity"] == 0.0
        if name == "one":
            kernels = [l.kernel.numpy() for l in packer.model.masked_layers()]
            own = {k: v.tobytes() for k, v in packer.model.task_values(1).items()}
    model = packer.model
    assert model.frozen_tasks == 0 and [sum(r.owned.values()) > 0 for r in packer.records] == [True, False]
    assert all((l.mask.numpy() == 1).all() for l in model.masked_layers())
    assert all((l.kernel.numpy() != k).mean() > 0.5 for l, k in zip(model.masked_layers(), kernels))
    assert task_digest(model, 1) != packer.records[0].digest and task_digest(model, 2) == packer.records[1].digest
    assert {k: v.tobytes() for k, v in model.task_values(1).items()} == own
