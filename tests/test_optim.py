"""The exact-freezing optimizer: after every step, every entry the active task does not own is
bit-identical, whatever the inner optimizer and its carried slot state."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from paenet.models import TaskSpec
from paenet.optim import ExactFreezingOptimizer
from paenet.pruning import TaskPruner
from paenet.training import make_train_step
from tiny_models import tiny_cnn

RNG = np.random.default_rng(1)

OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
    "sgd_momentum": lambda: keras.optimizers.SGD(1e-2, momentum=0.9),
    "sgd_decay": lambda: keras.optimizers.SGD(1e-2, momentum=0.9, weight_decay=0.1),
    "rmsprop_momentum": lambda: keras.optimizers.RMSprop(1e-3, momentum=0.9),
}


def _two_task_model():
    """Task 1 owns a random half of every kernel, task 2 the rest; some entries are free (mask 0, 0.0)."""
    model = tiny_cnn(name="m",
                     tasks=[TaskSpec("one", 3), TaskSpec("two", 3)]).build_variables()
    for layer in model.masked_layers():
        mask = RNG.choice(np.array([0, 1, 2], np.uint8), size=layer.mask.shape, p=[0.1, 0.45, 0.45])
        layer.mask.assign(mask)
        layer.kernel.assign(np.where(mask == 0, 0.0, layer.kernel.numpy()).astype(np.float32))
    return model


def _batch():
    return (tf.constant(RNG.normal(size=(8, 16, 16, 3)).astype(np.float32)),
            tf.constant(RNG.integers(0, 3, 8)))


def _frozen_state(model, task):
    """Bytes of every kernel entry the task does not own, and of every other task's own variables."""
    state = {}
    for layer in model.masked_layers():
        mask = layer.mask.numpy()
        state[layer.name] = layer.kernel.numpy()[mask != task].tobytes()
    for t in range(1, model.num_tasks + 1):
        if t != task:
            state.update({v.path: v.numpy().tobytes() for v in model.task_variables(t)})
    return state


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("jit_compile", [False, True])
def test_only_owned_entries_move_with_carried_slots(name, jit_compile, request):
    if jit_compile:
        request.getfixturevalue("without_op_determinism")
    model = _two_task_model()
    opt = ExactFreezingOptimizer(OPTIMIZERS[name]()).start_task(model, 2)
    step = make_train_step(model, opt, 2, jit_compile=jit_compile)
    x, y = _batch()
    for _ in range(3):  # build up momentum / moments on task 2's entries
        step(x, y)
    # Release some of task 2's weights mid-phase: their slots still carry momentum.
    TaskPruner(model, 2).prune(0.5)
    frozen = _frozen_state(model, 2)
    owned_before = {l.name: l.kernel.numpy()[l.mask.numpy() == 2].copy() for l in model.masked_layers()}
    for _ in range(3):
        step(x, y)
    assert _frozen_state(model, 2) == frozen
    for layer in model.masked_layers():
        mask, kernel = layer.mask.numpy(), layer.kernel.numpy()
        assert np.all(kernel[mask == 0] == 0.0) and not np.signbit(kernel[mask == 0]).any()
        assert not np.array_equal(kernel[mask == 2], owned_before[layer.name]), "task 2 must still learn"


@pytest.mark.parametrize("name", ["adamw", "sgd_momentum"])
def test_gradient_masking_alone_would_move_frozen_entries(name):
    """The control for the test above: the inner optimizer by itself, fed masked gradients, does move
    entries it should not (DESIGN §9), so the restore step is what keeps them exact."""
    model = _two_task_model()
    inner = OPTIMIZERS[name]()
    layer = model.masked_layers()[0]
    inner.build([layer.kernel])
    owned = layer.mask.numpy() == 2
    for _ in range(2):
        inner.apply_gradients([(tf.ones(layer.kernel.shape), layer.kernel)])
    before = layer.kernel.numpy()
    inner.apply_gradients([(tf.where(owned, tf.ones(layer.kernel.shape), 0.0), layer.kernel)])
    assert not np.array_equal(layer.kernel.numpy()[~owned], before[~owned])


def test_weight_decay_acts_only_on_owned_entries():
    model = _two_task_model()
    opt = ExactFreezingOptimizer(keras.optimizers.AdamW(1e-1, weight_decay=0.5)).start_task(model, 1)
    layer = model.masked_layers()[0]
    before, mask = layer.kernel.numpy(), layer.mask.numpy()
    zero = [tf.zeros_like(v) for v in opt.trainable_variables]
    opt.apply_gradients(zip(zero, opt.trainable_variables))
    after = layer.kernel.numpy()
    owned = (mask == 1) & (before != 0)
    assert np.all(np.abs(after[owned]) < np.abs(before[owned]))
    assert after[mask != 1].tobytes() == before[mask != 1].tobytes()


def test_starting_a_task_resets_the_slots_and_passes_only_its_variables():
    model = _two_task_model()
    opt = ExactFreezingOptimizer(keras.optimizers.Adam(1e-2)).start_task(model, 1)
    step = make_train_step(model, opt, 1)
    step(*_batch())
    first_inner = opt.inner
    assert any(np.any(v.numpy() != 0) for v in first_inner.variables if "momentum" in v.path)

    opt.start_task(model, 2)
    assert opt.inner is not first_inner and int(opt.iterations.numpy()) == 0
    assert all(np.all(v.numpy() == 0) for v in opt.inner.variables if "momentum" in v.path)
    task_vars = {v.path for v in opt.trainable_variables} - {l.kernel.path for l in model.masked_layers()}
    assert task_vars == {v.path for v in model.task_variables(2, trainable_only=True)}
    with pytest.raises(ValueError, match="not trainable for task 2"):
        opt.apply_gradients([(tf.zeros(3), model.heads.bias_t1)])
    with pytest.raises(ValueError, match="started for task 2, not task 1"):
        make_train_step(model, opt, 1)


def test_exact_under_mixed_bfloat16_with_loss_scaling():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _two_task_model()
        opt = ExactFreezingOptimizer(keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW(1e-2)))
        opt.start_task(model, 2)
        step = make_train_step(model, opt, 2)
        x, y = _batch()
        frozen = _frozen_state(model, 2)
        for _ in range(3):
            step(x, y)
        assert _frozen_state(model, 2) == frozen
        assert model.masked_layers()[0].kernel.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_unstarted_optimizer_is_refused():
    with pytest.raises(RuntimeError, match="start_task"):
        ExactFreezingOptimizer("sgd").apply_gradients([])
