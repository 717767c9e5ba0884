"""One harness over every registered backbone: config round trip, new tasks carry every value exactly,
finished tasks (plain and picking) bit-identical through expansion, and the SavedModel serves them."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from paenet.expansion import ExpansionPolicy
from paenet.export import export_savedmodel
from paenet.models import BACKBONES, TaskSpec, create_backbone
from paenet.packing import Packer
from paenet.training import Trainer

# The smallest configuration of each backbone that still has every kind of layer it has at full size.
TINY = {
    "small_cnn": dict(widths=(4, 8), dense_units=8, input_shape=(16, 16, 3)),
    "inception_resnet_v1": dict(input_size=80, width_multiplier=0.125, block_counts=(1, 1, 1), embedding_size=8),
    "mlp": dict(input_shape=(64,), widths=(16, 8), dense_units=8),
    "vgg16_bn": dict(input_shape=(32, 32, 3), widths=(4,) * 13, dense_units=8),
}


def test_every_backbone_has_a_tiny_configuration_here():
    assert set(BACKBONES) <= set(TINY)


@pytest.fixture(params=sorted(BACKBONES))
def backbone(request):
    return request.param


def _inputs(model):
    return np.random.default_rng(0).normal(size=(4, *model.image_shape)).astype(np.float32)


def _two_tasks(name):
    """Task 1 trained and half pruned; task 2 (picking) trained a little and finished."""
    packer = Packer(create_backbone(name, name="bb", **TINY[name]), "adam")
    x = _inputs(packer.model)
    data = tf.data.Dataset.from_tensors((x, np.arange(4) % 3))
    packer.start_task(TaskSpec("one", 3))
    trainer = Trainer(packer, progress=False)
    trainer.train(data, 2)
    packer.prune(0.5)
    packer.finish()
    packer.start_task(TaskSpec("two", 3), picks=True)
    trainer = Trainer(packer, progress=False)
    trainer.train(data, 2)
    packer.finish()
    return packer, x, data


def test_config_round_trip_and_new_tasks_carry_every_value(backbone):
    packer, x, _ = _two_tasks(backbone)
    model = packer.model
    clone = type(model).from_config(model.get_config()).build_variables()
    assert clone.get_config() == model.get_config()
    grown = model.with_tasks([*model.task_specs, TaskSpec("three", 2)])
    old = {v.path.split("/", 1)[1]: v.numpy() for v in model.variables}
    new = {v.path.split("/", 1)[1]: v.numpy() for v in grown.variables}
    assert all(new[k].tobytes() == v.tobytes() for k, v in old.items())
    for task in (1, 2):
        assert grown(x, task=task).numpy().tobytes() == model(x, task=task).numpy().tobytes()


def test_finished_tasks_are_bit_identical_through_expansion_and_export(backbone, tmp_path):
    packer, x, data = _two_tasks(backbone)
    expected = {t: packer.model(x, task=t).numpy() for t in (1, 2)}
    packer.start_task(TaskSpec("three", 3), picks=True)
    trainer = Trainer(packer, progress=False)
    assert packer.expand(ExpansionPolicy("uniform", 1.5, 3.0)) is not None
    trainer.train(data, 2)
    packer.finish()
    for t in (1, 2):
        assert packer.model(x, task=t).numpy().tobytes() == expected[t].tobytes()
    served = tf.saved_model.load(export_savedmodel(packer.model, str(tmp_path / "saved")))
    for t, name in ((1, "one"), (2, "two")):
        out = served.signatures[name](images=tf.constant(x))["probabilities"].numpy()
        np.testing.assert_allclose(out, keras.ops.softmax(expected[t]).numpy(), rtol=0, atol=1e-6)
