"""Masked layers, per-task BatchNorm and heads: effective weights, no writes, fresh per-task state,
serialisation and checkpoint round trips."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from paenet.layers import (MAX_TASKS, MaskedConv2D, MaskedDense, TaskBatchNorm, TaskHeads,
                           effective_kernel)
from paenet.models import SmallCNN, TaskSpec
from tiny_models import tiny_cnn

RNG = np.random.default_rng(0)


def _masked_conv(num_tasks=3, sharing="cumulative", use_bias=False):
    layer = MaskedConv2D(6, 3, num_tasks=num_tasks, sharing=sharing, use_bias=use_bias)
    layer.build((None, 8, 8, 4))
    layer.kernel.assign(RNG.normal(size=layer.kernel.shape).astype(np.float32))
    layer.mask.assign(RNG.integers(0, num_tasks + 1, layer.mask.shape).astype(np.uint8))
    return layer


def _expected_kernel(kernel, mask, task, sharing):
    if sharing == "cumulative":
        keep = (mask >= 1) & (mask <= task)
    else:
        keep = (mask == 1) | (mask == task)
    return np.where(keep, kernel, np.float32(0))


@pytest.mark.parametrize("sharing", ["cumulative", "first"])
@pytest.mark.parametrize("task", [1, 2, 3])
def test_conv_forward_uses_exactly_the_effective_kernel(sharing, task):
    layer = _masked_conv(sharing=sharing)
    x = tf.constant(RNG.normal(size=(2, 8, 8, 4)).astype(np.float32))
    kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
    expected = tf.nn.conv2d(x, _expected_kernel(kernel, mask, task, sharing), 1, "SAME")
    np.testing.assert_array_equal(layer(x, task=task).numpy(), expected.numpy())

    # Entries outside the effective kernel do not matter at all.
    outside = ~((mask >= 1) & (mask <= task)) if sharing == "cumulative" else ~((mask == 1) | (mask == task))
    assert outside.any()
    layer.kernel.assign(np.where(outside, kernel + 100.0, kernel))
    np.testing.assert_array_equal(layer(x, task=task).numpy(), expected.numpy())


def test_first_sharing_skips_middle_tasks():
    layer = _masked_conv(num_tasks=3, sharing="first")
    mask = layer.mask.numpy()
    eff = effective_kernel(layer.kernel, layer.mask, 3, "first").numpy()
    assert np.all(eff[mask == 2] == 0) and np.array_equal(eff[mask == 1], layer.kernel.numpy()[mask == 1])


def test_effective_kernel_zeros_are_positive():
    kernel = -np.ones((4,), np.float32)
    eff = effective_kernel(kernel, np.array([0, 1, 2, 3], np.uint8), 1).numpy()
    assert not np.signbit(eff[[0, 2, 3]]).any()


def test_forward_never_writes_kernel_or_mask():
    layer = _masked_conv(use_bias=True)
    before = (layer.kernel.numpy().tobytes(), layer.mask.numpy().tobytes())
    x = tf.constant(RNG.normal(size=(2, 8, 8, 4)).astype(np.float32))
    for task in (1, 2, 3):
        with tf.GradientTape() as tape:
            y = layer(x, task=task, training=True)
        tape.gradient(y, layer.kernel)
    assert (layer.kernel.numpy().tobytes(), layer.mask.numpy().tobytes()) == before


def test_dense_per_task_bias_and_mask():
    layer = MaskedDense(5, use_bias=True, num_tasks=2)
    layer.build((None, 7))
    layer.kernel.assign(RNG.normal(size=(7, 5)).astype(np.float32))
    layer.mask.assign(RNG.integers(0, 3, (7, 5)).astype(np.uint8))
    layer.bias_t2.assign(np.arange(5, dtype=np.float32))
    x = RNG.normal(size=(3, 7)).astype(np.float32)
    for task in (1, 2):
        kernel = _expected_kernel(layer.kernel.numpy(), layer.mask.numpy(), task, "cumulative")
        bias = getattr(layer, f"bias_t{task}").numpy()
        np.testing.assert_allclose(layer(x, task=task).numpy(), x @ kernel + bias, rtol=1e-5, atol=1e-5)
    assert layer.task_variables(2) == [layer.bias_t2]


def test_bad_task_and_sharing_are_refused():
    layer = _masked_conv(num_tasks=2)
    x = tf.zeros((1, 8, 8, 4))
    with pytest.raises(ValueError, match="task 3 does not exist"):
        layer(x, task=3)
    with pytest.raises(TypeError, match="task must be a Python int"):
        layer(x, task=None)
    with pytest.raises(ValueError, match="sharing must be one of"):
        MaskedDense(3, sharing="all")
    with pytest.raises(ValueError, match=f"at most {MAX_TASKS} tasks"):
        MaskedDense(3, num_tasks=MAX_TASKS + 1)
    with pytest.raises(ValueError, match=f"at most {MAX_TASKS} tasks"):
        SmallCNN(tasks=[TaskSpec(f"t{i}", 2) for i in range(MAX_TASKS + 1)])


def _bn_reference(x, mean, variance, beta, eps=1e-3):
    return (x - mean) / np.sqrt(variance + eps) + beta


def test_task_batchnorm_updates_only_the_active_task():
    bn = TaskBatchNorm(num_tasks=3, momentum=0.9)
    x = RNG.normal(2.0, 3.0, size=(16, 4, 4, 5)).astype(np.float32)
    bn.build(x.shape)
    for t in (1, 3):
        getattr(bn, f"moving_mean_t{t}").assign(np.full(5, float(t), np.float32))
    before = {v.path: v.numpy().copy() for v in bn.variables}
    bn(x, task=2, training=True)
    changed = {v.path for v in bn.variables if not np.array_equal(before[v.path], v.numpy())}
    assert changed == {bn.moving_mean_t2.path, bn.moving_variance_t2.path}
    batch_mean = x.reshape(-1, 5).mean(0)
    np.testing.assert_allclose(bn.moving_mean_t2.numpy(), 0.1 * batch_mean, rtol=1e-5)

    # Inference uses the task's own moving statistics and beta, FaceNet's epsilon, no gamma.
    bn.beta_t3.assign(np.linspace(-1, 1, 5).astype(np.float32))
    y = bn(x, task=3, training=False).numpy()
    expected = _bn_reference(x, bn.moving_mean_t3.numpy(), bn.moving_variance_t3.numpy(), bn.beta_t3.numpy())
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_task_batchnorm_dense_inputs_and_fresh_state():
    """Dense features (their own, unfused training path) normalise and update the moving statistics as
    the 4-D path does: batch mean, unbiased batch variance."""
    bn, image_bn = TaskBatchNorm(num_tasks=2, momentum=0.5), TaskBatchNorm(num_tasks=2, momentum=0.5)
    x = RNG.normal(1.0, 2.0, size=(8, 6)).astype(np.float32)
    y = bn(x, task=1, training=True).numpy()
    image_bn(x.reshape(8, 1, 1, 6), task=1, training=True)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean_t1.numpy(), 0.5 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance_t1.numpy(), 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-5)
    for a, b in zip(bn.task_variables(1), image_bn.task_variables(1)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)
    mixed = TaskBatchNorm(num_tasks=1, dtype="mixed_float16")
    np.testing.assert_allclose(mixed(x, task=1, training=True).numpy(), y, atol=2e-3)   # float16 out
    bn = TaskBatchNorm(num_tasks=2)
    bn(x, task=1, training=True)
    assert np.all(bn.beta_t2.numpy() == 0) and np.all(bn.moving_mean_t2.numpy() == 0)
    assert np.all(bn.moving_variance_t2.numpy() == 1)
    assert bn.momentum == 0.995 and bn.epsilon == 1e-3 and not bn.scale


def test_task_heads():
    heads = TaskHeads([3, 0, 5])
    x = RNG.normal(size=(2, 4)).astype(np.float32)
    assert heads(x, task=1).shape == (2, 3) and heads(x, task=3).shape == (2, 5)
    np.testing.assert_array_equal(heads(x, task=2).numpy(), x)
    assert heads.task_variables(2) == []
    assert [v.shape for v in heads.task_variables(3)] == [(4, 5), (5,)]


@pytest.mark.parametrize("layer", [
    MaskedConv2D(4, (3, 1), strides=2, padding="valid", use_bias=True, num_tasks=2, sharing="first"),
    MaskedDense(3, num_tasks=4),
    TaskBatchNorm(num_tasks=2, momentum=0.9, scale=True),
    TaskHeads([2, 0, 7]),
])
def test_layers_round_trip_their_config(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert restored.get_config() == layer.get_config()


def _model_with_state(tasks=3):
    model = tiny_cnn(name="m",
                     tasks=[TaskSpec(f"t{i}", i + 1) for i in range(1, tasks + 1)]).build_variables()
    for v in model.variables:
        if v.dtype == "uint8":
            v.assign(RNG.integers(0, tasks + 1, v.shape).astype(np.uint8))
        else:
            v.assign(RNG.uniform(0.5, 1.5, v.shape).astype(np.float32))
    return model


def test_checkpoint_round_trips_masks_and_per_task_state(tmp_path):
    model = _model_with_state()
    path = tf.train.Checkpoint(variables=model.checkpoint_variables()).write(str(tmp_path / "ck"))
    clone = type(model).from_config(model.get_config()).build_variables()
    tf.train.Checkpoint(variables=clone.checkpoint_variables()).read(path).assert_consumed()
    assert len(clone.variables) == len(model.variables)
    for a, b in zip(model.variables, clone.variables):
        assert a.path == b.path and a.numpy().tobytes() == b.numpy().tobytes()
    x = RNG.normal(size=(2, 16, 16, 3)).astype(np.float32)
    for t in (1, 2, 3):
        np.testing.assert_array_equal(model(x, task=t).numpy(), clone(x, task=t).numpy())


def test_adding_a_task_keeps_every_value_and_starts_fresh_parts():
    model = _model_with_state(tasks=2)
    grown = model.with_tasks([*model.task_specs, TaskSpec("new", 4)])
    old = {v.path: v.numpy() for v in model.variables}
    for v in grown.variables:
        if v.path in old:
            assert v.numpy().tobytes() == old[v.path].tobytes()
    fresh = grown.task_variables(3)
    assert fresh and all(v.path not in old for v in fresh)
    assert np.all(grown.dense_bn.moving_variance_t3.numpy() == 1) and np.all(grown.heads.bias_t3.numpy() == 0)
