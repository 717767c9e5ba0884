"""Inception-ResNet-v1: FaceNet's topology and names, widths, input sizes, the plain-Keras twin."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from paenet.models import TaskSpec
from paenet.models.base import variable_key
from paenet.models.inception_resnet_v1 import (InceptionResnetV1, count_blocks, facenet_name, facenet_variables,
                                               facenet_widths, plain_inception_resnet_v1, residual_scales,
                                               resolve_widths)
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import claim_free_weights

from conftest import SHARED

SMALL = dict(input_size=80, width_multiplier=0.125, embedding_size=16)


def small_model(tasks=(TaskSpec("face"),), **kwargs):
    model = InceptionResnetV1(tasks=list(tasks), **{**SMALL, **kwargs}).build_variables()
    claim_free_weights(model, 1)
    return model


def randomize(model, seed=0):
    """Random values in every float variable (BatchNorm variances positive), so tests see real numbers."""
    rng = np.random.default_rng(seed)
    for v in model.variables:
        if v.dtype == "float32":
            value = rng.normal(0, 0.1, v.shape)
            if "moving_variance" in v.path:
                value = rng.uniform(0.5, 1.5, v.shape)
            v.assign(value.astype(np.float32))


@pytest.fixture(scope="module")
def full_model():
    """FaceNet's full-size model with the 8631-class face head of the reference checkpoint."""
    return InceptionResnetV1(tasks=[TaskSpec("face", 8631)]).build_variables()


def test_facenet_topology_counts():
    with open(SHARED / "facenet_reference" / "variables.json") as f:
        assert count_blocks(v["name"] for v in json.load(f)["variables"]) == (5, 10, 5)
    widths, scales = facenet_widths(), residual_scales()
    assert len(widths) == 111 and len(scales) == 21
    assert sorted(scales.values()).count(0.17) == 5 and list(scales.values()).count(0.10) == 10
    assert list(scales.values()).count(0.20) == 5 and scales["Block8/Conv2d_1x1"] == 1.0
    assert widths["Conv2d_4b_3x3"] == 256 and widths["Mixed_6a/Branch_0/Conv2d_1a_3x3"] == 384
    assert widths["Repeat_1/block17_10/Branch_1/Conv2d_0c_7x1"] == 128


def test_names_map_one_to_one_onto_all_492_checkpoint_variables(full_model):
    with open(SHARED / "facenet_reference" / "variables.json") as f:
        expected = {v["name"]: tuple(v["shape"]) for v in json.load(f)["variables"]}
    mapped = facenet_variables(full_model, task=1)
    assert len(expected) == 492
    assert set(mapped) == set(expected)
    assert {name: tuple(v.shape) for name, v in mapped.items()} == expected
    assert len({id(v) for v in mapped.values()}) == 492
    # Every float variable of the model has a FaceNet name (the masks are uint8).
    floats = [variable_key(v) for v in full_model.variables if v.dtype == "float32"]
    assert len(floats) == 492 and all(facenet_name(k) is not None for k in floats)


def test_facenet_name_examples():
    assert (facenet_name("Repeat.block35_1.Branch_0.Conv2d_1x1/kernel")
            == "InceptionResnetV1/Repeat/block35_1/Branch_0/Conv2d_1x1/weights")
    assert (facenet_name("Repeat_1.block17_3.Conv2d_1x1/bias_t1")
            == "InceptionResnetV1/Repeat_1/block17_3/Conv2d_1x1/biases")
    assert facenet_name("Bottleneck.BatchNorm/moving_variance_t2", task=2) == \
        "InceptionResnetV1/Bottleneck/BatchNorm/moving_variance"
    assert facenet_name("Bottleneck.BatchNorm/moving_variance_t2", task=1) is None
    assert facenet_name("Logits/kernel_t1") == "Logits/weights"
    assert facenet_name("Conv2d_1a_3x3/mask") is None


def test_outputs_and_heads():
    model = small_model(tasks=[TaskSpec("face"), TaskSpec("age", 8)])
    randomize(model)
    x = tf.random.stateless_uniform((3, 80, 80, 3), (1, 2), -1, 1)
    emb = model(x, task=1).numpy()
    pre = model(x, task=1, outputs="prelogits").numpy()
    assert emb.shape == (3, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb, pre / np.linalg.norm(pre, axis=1, keepdims=True), atol=1e-6)
    logits = model(x, task=2).numpy()
    pre2 = model(x, task=2, outputs="prelogits").numpy()
    np.testing.assert_allclose(logits, pre2 @ model.Logits.kernel_t2.numpy() + model.Logits.bias_t2.numpy(),
                               atol=1e-5)
    with pytest.raises(ValueError, match="no head"):
        model(x, task=1, outputs="logits")
    with pytest.raises(ValueError, match="outputs must be one of"):
        model(x, task=1, outputs="features")


def test_input_size_and_final_pool_adapts():
    with pytest.raises(ValueError, match=">= 80"):
        InceptionResnetV1(input_size=79, tasks=[TaskSpec("face")])
    for size in (80, 123):
        model = small_model(input_size=size)
        assert model(tf.zeros((2, size, size, 3)), task=1).shape == (2, 16)


def test_pool_is_facenets_3x3_valid_average_at_160():
    plain = plain_inception_resnet_v1(InceptionResnetV1(tasks=[TaskSpec("face")], width_multiplier=0.125))
    pools = [l for l in plain.operations if "average_pool" in l.name.lower() or "avg" in l.name.lower()]
    assert len(pools) == 1
    assert tuple(pools[0].input.shape[1:3]) == (3, 3)
    assert tuple(pools[0].output.shape[1:3]) == (1, 1)


def test_widths_and_multiplier():
    assert resolve_widths(0.5)["Conv2d_1a_3x3"] == 16
    assert resolve_widths(0.01)["Conv2d_1a_3x3"] == 1
    widths = resolve_widths(0.25, {"Conv2d_4b_3x3": 40})
    assert widths["Conv2d_4b_3x3"] == 40 and widths["Conv2d_4a_3x3"] == 48
    with pytest.raises(ValueError, match="does not have"):
        resolve_widths(1.0, {"Conv2d_9z": 3})
    with pytest.raises(ValueError, match="positive integers"):
        resolve_widths(1.0, {"Conv2d_1a_3x3": 0})
    model = small_model(widths={"Conv2d_4b_3x3": 40})
    # The up-projections follow the residual stream that Conv2d_4b_3x3 sets.
    assert tuple(getattr(model, "Repeat.block35_3.Conv2d_1x1").kernel.shape) == (1, 1, 12, 40)
    assert tuple(model.Bottleneck.kernel.shape)[1] == 16


def test_block_counts_set_the_depth():
    model = small_model(block_counts=(1, 2, 0))
    names = [variable_key(v) for v in model.variables]
    assert count_blocks(facenet_variables(model)) == (1, 2, 0)
    assert any(k.startswith("Repeat_1.block17_2.") for k in names) and not any("block8_" in k for k in names)
    assert len(model.masked_layers()) == 6 + 7 + 4 + 2 * 5 + 7 + 5 + 1   # stem, blocks, Block8, Bottleneck
    assert model(tf.zeros((1, 80, 80, 3)), task=1).shape == (1, 16)
    with pytest.raises(ValueError, match="block_counts"):
        small_model(block_counts=(1, 2))


def test_config_round_trip_and_new_task_keeps_values():
    model = small_model()
    randomize(model)
    config = model.get_config()
    assert InceptionResnetV1.from_config(config).get_config() == config
    bigger = model.with_tasks([*model.task_specs, TaskSpec("gender", 2)])
    x = tf.random.stateless_uniform((2, 80, 80, 3), (3, 4), -1, 1)
    np.testing.assert_array_equal(bigger(x, task=1).numpy(), model(x, task=1).numpy())
    assert bigger(x, task=2).shape == (2, 2)


def test_dropout_acts_only_in_training():
    model = small_model(keep_probability=0.5)
    randomize(model)
    x = tf.random.stateless_uniform((4, 80, 80, 3), (5, 6), -1, 1)
    np.testing.assert_array_equal(model(x, task=1).numpy(), model(x, task=1).numpy())
    a = model(x, task=1, training=True, outputs="prelogits").numpy()
    b = model(x, task=1, training=True, outputs="prelogits").numpy()
    assert not np.array_equal(a, b)


def copy_into_plain(model, plain, task=1):
    """Task `task`'s values of `model` into the same-named layers of its plain twin."""
    for layer in plain.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.name != "Logits":
            source = getattr(model, layer.name)
            values = [source.effective_kernel(task)]
            values += [getattr(source, f"bias_t{task}")] if layer.use_bias else []
        elif isinstance(layer, keras.layers.BatchNormalization):
            values = getattr(model, layer.name).task_variables(task)
        elif layer.name == "Logits":
            values = model.Logits.task_variables(task)
        else:
            continue
        layer.set_weights([np.asarray(v) for v in values])


@pytest.mark.parametrize("classes", [0, 5])
def test_plain_twin_is_the_same_graph(classes):
    model = small_model(tasks=[TaskSpec("face", classes)])
    randomize(model)
    plain = plain_inception_resnet_v1(model, classes)
    masked_params = sum(int(np.prod(v.shape)) for v in model.variables if v.dtype == "float32")
    assert plain.count_params() == masked_params
    copy_into_plain(model, plain)
    x = tf.random.stateless_uniform((3, 80, 80, 3), (7, 8), -1, 1)
    np.testing.assert_allclose(plain(x, training=False).numpy(), model(x, task=1).numpy(), atol=1e-5)


def test_mixed_bfloat16_outputs_float32_embeddings():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = small_model()
        emb = model(tf.random.stateless_uniform((2, 80, 80, 3), (9, 9), -1, 1), task=1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert emb.dtype == tf.float32
    assert model.Bottleneck.kernel.dtype == "float32"
    np.testing.assert_allclose(np.linalg.norm(emb.numpy(), axis=1), 1.0, atol=1e-5)


def test_a_new_task_gets_its_own_parts_and_shares_the_kernels():
    model = small_model().with_tasks([TaskSpec("face"), TaskSpec("age", 3)])
    own = [variable_key(v) for v in model.task_variables(2)]
    assert len(own) == 112 * 3 + 21 + 2          # BatchNorm beta/mean/variance, up-projection biases, head
    assert all(k.endswith("_t2") for k in own)
    trainable = ExactFreezingOptimizer(keras.optimizers.Adam()).start_task(model, 2).trainable_variables
    assert len(trainable) == 133 + 112 + 21 + 2  # every masked kernel, and task 2's trainable parts


def test_benchmark_rows_run_in_quick_mode(without_op_determinism):
    """Runs every Inception-ResNet-v1 benchmark row, with tiny settings (training is exercised here;
    XLA has no deterministic MaxPool gradient, so determinism is off, as in ``paenet.bench``)."""
    from paenet.benchmarks import inception
    from paenet.benchmarks.timing import measure_rows
    rows = list(measure_rows(inception.GROUPS, quick=True))
    assert [r["name"] for r in rows] == [
        "forward_inception_resnet_v1_fp32", "train_step_inception_resnet_v1_fp32",
        "forward_inception_resnet_v1_bf16", "train_step_inception_resnet_v1_bf16",
        "forward_inception_resnet_v1_xla", "train_step_inception_resnet_v1_xla",
        "prune_update_inception_resnet_v1"]
    assert all(r["ours"] > 0 and r["reference"] > 0 for r in rows)
    assert keras.mixed_precision.global_policy().name == "float32"
