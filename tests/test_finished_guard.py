"""One rule for every door: every public entry point that takes a task and can write a finished task's
kernel entries, mask, picks, BatchNorm statistics or head refuses in one line naming it (or, for a forward
pass, computes in inference mode), for every method; a change made behind every guard is named by the next
verify or export.

The entry points are found by introspection (every public function or method of ``paenet`` with a task
among its parameters or in its name), so a new one fails ``test_every_entry_point_taking_a_task_is_classified``
until it is given a case here or is listed as one that cannot write a finished task.
"""
import importlib
import inspect
import pkgutil
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import paenet
from paenet.expansion import expand
from paenet.export import export_savedmodel
from paenet.layers import FinishedTaskError
from paenet.methods import get_method
from paenet.models import TaskSpec
from paenet.models.base import dtype_policy
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import FineTuningPacker, Packer, claim_free_weights
from paenet.pruning import TaskPruner
from paenet.records import IntegrityError, verify
from paenet.training import make_train_loop, make_train_step
from tiny_models import tiny_backbone

METHODS = ("packnet", "pae", "cpg")


def _packed(method, backbone="mlp", during_second=None):
    """Tasks "one" and "two" (picking under CPG) finished, each half pruned; `during_second(packer, x)`
    runs while task two is active. Keeps a snapshot taken during task one."""
    sharing = "first" if method == "packnet" else "cumulative"
    packer = Packer(tiny_backbone(backbone, name="g", sharing=sharing), "adam")
    x = np.random.default_rng(0).normal(size=(4, *packer.model.image_shape)).astype(np.float32)
    packer.start_task(TaskSpec("one", 3))
    snapshot = packer.snapshot_task()
    packer.prune(0.5)
    packer.finish(method=method)
    packer.start_task(TaskSpec("two", 2), picks=get_method(method).picks)
    extra = during_second(packer, x) if during_second else None
    packer.prune(0.5)
    packer.finish(method=method)
    return types.SimpleNamespace(packer=packer, model=packer.model, x=x, snapshot=snapshot, extra=extra)


def _train_once(packer, x):
    step = make_train_step(packer.model, packer.optimizer, packer.active_task)
    step(x, np.arange(len(x)) % 2)
    return step


def _train_loop_once(packer, x):
    loop = make_train_loop(packer.model, packer.optimizer, packer.active_task)
    loop(iter(_batches(x).repeat()), tf.constant(2))
    return loop


def _batches(x):
    return tf.data.Dataset.from_tensors((x, np.arange(len(x)) % 2))


def _started_optimizer(packer, x):
    return ExactFreezingOptimizer("adam").start_task(packer.model, packer.active_task)


def _adopt(g):
    """The README's FaceNet flow: a model with finished tasks handed to a new Packer with its records."""
    copy = g.model.rebuild(frozen_tasks=0, task_digests=[])
    Packer(copy, records=g.packer.records)
    copy(g.x, task=2, training=True)
    return copy


def _forward(backbone):
    return dict(backbone=backbone, refuses=None,
                act=lambda g: type(g.model).call(g.model, tf.constant(g.x), task=1, training=True))


# Entry point -> how it is exercised on a finished task: `act(g)` must raise FinishedTaskError naming task
# `refuses` (None: a forward pass, which must run in inference mode and change nothing). `model(g)` is the
# model whose finished tasks must still verify afterwards (default: the packer's).
WRITERS = {
    "paenet.optim.ExactFreezingOptimizer.start_task": dict(
        refuses=2, act=lambda g: ExactFreezingOptimizer("adam").start_task(g.model, 2)),
    "paenet.optim.ExactFreezingOptimizer.apply_gradients": dict(
        refuses=2, during=_started_optimizer,
        act=lambda g: g.extra.apply_gradients([(tf.ones_like(v), v) for v in g.extra.trainable_variables])),
    "paenet.training.make_train_step": dict(
        refuses=2, during=_train_once, act=lambda g: g.extra(g.x, np.arange(len(g.x)) % 2)),
    "paenet.training.make_train_loop": dict(
        refuses=2, during=_train_loop_once, act=lambda g: g.extra(iter(_batches(g.x).repeat()), tf.constant(2))),
    "paenet.packing.Packer.restore_task": dict(
        refuses=1, act=lambda g: (g.packer.start_task(TaskSpec("three", 2)), g.packer.restore_task(g.snapshot))),
    "paenet.packing.Packer.resume_task": dict(refuses=1, act=lambda g: g.packer.resume_task(1)),
    "paenet.packing.Packer.__init__": dict(refuses=None, act=_adopt, model=lambda g, copy: copy),
    "paenet.packing.FineTuningPacker.__init__": dict(refuses=1, act=lambda g: FineTuningPacker(g.model)),
    "paenet.pruning.TaskPruner.__init__": dict(refuses=2, act=lambda g: TaskPruner(g.model, 2).prune(0.9)),
    "paenet.packing.claim_free_weights": dict(
        refuses=2, act=lambda g: claim_free_weights(g.model, 2, reinitialize=True)),
    "paenet.models.base.PackableModel.inherit_task_parts": dict(
        refuses=2, act=lambda g: g.model.inherit_task_parts(1, 2)),
    "paenet.models.base.PackableModel.with_tasks": dict(
        refuses=1, act=lambda g: g.model.with_tasks([TaskSpec("uno", 3), TaskSpec("two", 2)])),
    "paenet.models.base.PackableModel.__call__": dict(
        refuses=None, act=lambda g: g.model(g.x, task=1, training=True)),
    "paenet.expansion.expand": dict(
        refuses=2, act=lambda g: expand(g.model, {k: w + 4 for k, w in g.model.width_config().items()}, 2)),
    "paenet.layers.masked.MaskedKernelLayer.store_pick_bits": dict(
        refuses=2, act=lambda g: g.model.masked_layers()[0].store_pick_bits(2, g.model.masked_layers()[0].pickable(2))),
    "paenet.layers.task_parts.TaskBatchNorm.call": dict(
        refuses=None, act=lambda g: g.model.hidden1_bn(tf.ones((4, g.model.hidden1.units)), task=1, training=True)),
    "paenet.models.mlp.MLP.call": _forward("mlp"),
    "paenet.models.small_cnn.SmallCNN.call": _forward("small_cnn"),
    "paenet.models.vgg16.VGG16BN.call": _forward("vgg16_bn"),
    "paenet.models.resnet18.ResNet18.call": _forward("resnet18"),
    "paenet.models.inception_resnet_v1.InceptionResnetV1.call": _forward("inception_resnet_v1"),
}

# Entry points that take a task but cannot write a finished one, and why.
READS = {    # compute from a model, a task's values or numbers, writing nothing
    "paenet.compressed.mask_bits", "paenet.embed.embed_images", "paenet.evaluate.embedding_model",
    "paenet.evaluation.classification.evaluate_classifier", "paenet.evaluation.flops.forward_flops",
    "paenet.evaluation.lfw.embedding_function", "paenet.expansion.saturation_widths",
    "paenet.expansion.frozen_shapes_for", "paenet.expansion.propose_widths", "paenet.serving.serves_embeddings",
    "paenet.export.select_tasks", "paenet.serving.task_outputs", "paenet.serving.signatures",
    "paenet.litert.check", "paenet.litert.convert", "paenet.litert.export", "paenet.predict.Predictor.__init__",
    "paenet.predict.run", "paenet.training.inference_function", "paenet.layers.masked.check_task",
    "paenet.layers.masked.check_num_tasks", "paenet.layers.masked.check_unfinished",
    "paenet.layers.masked.effective_condition", "paenet.layers.masked.effective_kernel",
    "paenet.layers.masked.picked_kernel", "paenet.layers.masked.masks_read_once",
    "paenet.layers.masked.owned_condition", "paenet.layers.masked.MaskedKernelLayer.pick_variable",
    "paenet.layers.masked.MaskedKernelLayer.pickable", "paenet.layers.masked.MaskedKernelLayer.pick_bits",
    "paenet.layers.masked.MaskedKernelLayer.task_variables", "paenet.layers.masked.MaskedKernelLayer.task_shape",
    "paenet.layers.masked.MaskedKernelLayer.effective_kernel", "paenet.layers.masked.MaskedKernelLayer.call",
    "paenet.layers.task_parts.TaskBatchNorm.task_variables", "paenet.layers.task_parts.TaskHeads.task_variables",
    "paenet.layers.task_parts.TaskHeads.call", "paenet.models.base.PackableModel.check_task",
    "paenet.models.base.PackableModel.check_unfinished", "paenet.models.base.PackableModel.task_number",
    "paenet.models.base.PackableModel.pick_variables", "paenet.models.base.PackableModel.task_variables",
    "paenet.models.base.PackableModel.task_values", "paenet.models.inception_resnet_v1.facenet_name",
    "paenet.models.inception_resnet_v1.facenet_variables",
    "paenet.models.inception_resnet_v1.InceptionResnetV1.serves_embeddings", "paenet.plots.final_accuracy_per_task",
    "paenet.pruning.select_releases", "paenet.records.task_digest", "paenet.records.owned_counts",
    "paenet.training.owned_l2", "paenet.training.Trainer.evaluate", "paenet.training.make_predict_fn",
    "paenet.training.predict", "paenet.training.top1_accuracy", "paenet.export.export_savedmodel",
    "paenet.export.export_workspace", "paenet.evaluation.continual.AccuracyMatrix.record",
    "paenet.evaluation.continual.AccuracyMatrix.record_before",
    "paenet.cl.benchmark.BenchConfig.task_budget", "paenet.cl.benchmark.reserve_for",
    "paenet.cl.benchmark.phase_accuracy", "paenet.litert.held_out_accuracy",
}
CONSTRUCTS = {   # make a new, unfinished object (a model's finished tasks come from its config, kept)
    "paenet.layers.masked.MaskedKernelLayer.__init__", "paenet.layers.task_parts.TaskBatchNorm.__init__",
    "paenet.models.base.PackableModel.__init__", "paenet.records.TaskRecord.__init__",
    "paenet.config.Settings.__init__", "paenet.config.from_flags", "paenet.cl.sequences.Sequence.__init__",
    "paenet.cl.sequences.SequenceSpec.__init__", "paenet.evaluation.continual.AccuracyMatrix.__init__",
    "paenet.app.import_task_modules", "paenet.cl.benchmark.MethodResult.__init__",
}
ACTIVE_ONLY = {  # act on the packer's active task, never a finished one (the active one is unfinished)
    "paenet.packing.Packer.start_task", "paenet.packing.Packer.snapshot_task", "paenet.goal.pack_task",
    "paenet.workspace.Workspace.finish_active",
}
OWN_MODELS = {   # benchmarks: build and time models of their own, no finished task among them
    "paenet.benchmarks.core.masked_steps", "paenet.benchmarks.core.masked_vs_plain_rows",
    "paenet.benchmarks.core.prune_update_row", "paenet.benchmarks.growth.packed",
    "paenet.benchmarks.inception.packed_model", "paenet.benchmarks.references.reference_select_releases",
    "paenet.benchmarks.references.reference_prune",
}


def _entry_points_taking_a_task() -> set[str]:
    """Every public function and method of paenet with a task among its parameters or in its name, and
    every layer's ``__call__`` of its own."""
    found = set()
    for info in pkgutil.walk_packages(paenet.__path__, "paenet."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                members = [(name, obj)]
            elif inspect.isclass(obj):
                members = [(f"{name}.{n}", f) for n, f in vars(obj).items() if inspect.isfunction(f)
                           and (not n.startswith("_") or n in ("__init__", "__call__"))]
            else:
                continue
            for qualified, function in members:
                parameters = inspect.signature(function).parameters
                if (any("task" in p for p in parameters) or "task" in qualified.rsplit(".", 1)[-1]
                        or (qualified.endswith(".__call__") and issubclass(obj, keras.Layer))):
                    found.add(f"{module.__name__}.{qualified}")
    return found


def test_every_entry_point_taking_a_task_is_classified():
    classified = [set(WRITERS), READS, CONSTRUCTS, ACTIVE_ONLY, OWN_MODELS]
    found = _entry_points_taking_a_task()
    unclassified = found - set().union(*classified)
    assert not unclassified, f"public entry points taking a task with no guard case here: {sorted(unclassified)}"
    twice = [e for e in found if sum(e in c for c in classified) > 1]
    assert not twice


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("entry", sorted(WRITERS))
def test_an_entry_point_never_changes_a_finished_task(entry, method):
    case = WRITERS[entry]
    g = _packed(method, case.get("backbone", "mlp"), case.get("during"))
    records = g.packer.records
    if case["refuses"] is None:
        result = case["act"](g)
        model = case["model"](g, result) if "model" in case else g.model
    else:
        name = records[case["refuses"] - 1].name
        with pytest.raises(FinishedTaskError, match=rf"^task {case['refuses']}( \({name}\))? is finished: [^\n]*$"):
            case["act"](g)
        model = g.model
    verify(model, records)          # digests cover kernels, picks, BatchNorm statistics, biases and heads
    verify(model)                   # and the digests the model holds itself


@pytest.mark.parametrize("method", METHODS)
def test_training_every_weight_is_refused_while_any_task_is_finished(method):
    """Fine-tuning's optimizer moves every kernel entry: with task 1 finished it refuses even the
    unfinished task 2, naming task 1, and nothing changes."""
    def every_weight(packer, x):
        with pytest.raises(FinishedTaskError, match=r"^task 1 \(one\) is finished: ExactFreezingOptimizer"):
            ExactFreezingOptimizer("adam").start_task(packer.model, 2, every_weight=True)
    g = _packed(method, during_second=every_weight)
    verify(g.model, g.packer.records)


@pytest.mark.parametrize("method", METHODS)
def test_a_raw_assign_is_named_by_verify_and_export_without_records(method, tmp_path):
    g = _packed(method)
    g.model.hidden1_bn.moving_mean_t1.assign(g.model.hidden1_bn.moving_mean_t1 + 1.0)
    with pytest.raises(IntegrityError, match=r"task 1 \(one\): digest mismatch"):
        verify(g.model)
    with pytest.raises(IntegrityError, match=r"task 1 \(one\)"):
        export_savedmodel(g.model, str(tmp_path / "saved"))
    assert not (tmp_path / "saved").exists()


def test_a_keras_file_keeps_the_recorded_dtype_policy(tmp_path):
    with dtype_policy("mixed_bfloat16"):
        g = _packed("pae")
    path = str(tmp_path / "m.keras")
    g.model.save(path)
    loaded = keras.saving.load_model(path)           # this process runs float32
    assert loaded.dtype_policy.name == "mixed_bfloat16"
    assert loaded.frozen_tasks == 2
    verify(loaded, g.packer.records)
    assert np.array_equal(loaded(g.x, task=1), g.model(g.x, task=1))
