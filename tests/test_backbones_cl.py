"""The continual-learning backbones (masked MLP, masked VGG16-BN): config round trip, exact transplants
when a task is added, finished tasks bit-identical through expansion, and training through a Packer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from paenet.expansion import expand, masked_parameters, uniform_widths
from paenet.models import MLP, VGG16BN, TaskSpec, variable_key
from paenet.packing import Packer
from paenet.records import task_digest
from paenet.training import Trainer
from randomized import randomize

RNG = np.random.default_rng(11)
TASKS = [TaskSpec("one", 3), TaskSpec("two", 4)]
TINY_VGG = dict(widths=(3, 4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8), dense_units=(10, 9), input_shape=(32, 32, 3))
BACKBONES = {
    "mlp": (MLP, dict(widths=(12, 10), dense_units=6, input_shape=(8, 8, 1))),
    "mlp_bias": (MLP, dict(widths=(12,), dense_units=6, batch_norm=False, dropout=0.25, input_shape=(64,))),
    "vgg16_bn": (VGG16BN, TINY_VGG),
}


def build(which, tasks=TASKS, **changes):
    cls, kwargs = BACKBONES[which]
    return cls(**{**kwargs, **changes}, tasks=tasks, name=which).build_variables()


def inputs(model, n=4):
    return RNG.normal(size=(n, *model.image_shape)).astype(np.float32)


@pytest.mark.parametrize("which", BACKBONES)
def test_config_round_trip(which):
    model = build(which)
    clone = type(model).from_config(model.get_config()).build_variables()
    assert clone.get_config() == model.get_config()
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert copy.built and copy.get_config() == model.get_config()
    assert sorted(variable_key(v) for v in copy.variables) == sorted(variable_key(v) for v in model.variables)


def test_layer_shapes():
    mlp = MLP(tasks=TASKS).build_variables()        # DEN's 784-312-128
    assert [tuple(l.kernel.shape) for l in mlp.masked_layers()] == [(784, 312), (312, 128)]
    assert mlp(np.zeros((2, 28, 28, 1), np.float32), task=2).shape == (2, 4)
    vgg = VGG16BN(tasks=TASKS).build_variables()    # CPG's VGG16-BN for CIFAR: 33.6 M masked weights
    assert masked_parameters(vgg) == 14_710_464 + 512 * 4096 + 4096 * 4096
    with pytest.raises(ValueError, match="VGG16 has 13 convolutions; got 2 widths"):
        VGG16BN(widths=(4, 8))


@pytest.mark.parametrize("which", BACKBONES)
def test_with_tasks_carries_every_value_exactly(which):
    model = randomize(build(which), RNG)
    x = inputs(model)
    before = [model(x, task=t).numpy().tobytes() for t in (1, 2)]
    grown = model.with_tasks([*TASKS, TaskSpec("three", 2)])
    old = {variable_key(v): v.numpy() for v in model.variables}
    for v in grown.variables:
        key = variable_key(v)
        if key in old:
            assert v.numpy().tobytes() == old[key].tobytes(), key
        else:
            assert key.endswith("_t3"), key    # only task 3's parts are new
    assert [grown(x, task=t).numpy().tobytes() for t in (1, 2)] == before
    assert grown(x, task=3).shape == (len(x), 2)


@pytest.mark.parametrize("which", BACKBONES)
def test_finished_task_bit_identical_through_expansion(which):
    model = randomize(build(which), RNG)
    x = inputs(model)
    before = model(x, task=1).numpy().tobytes(), task_digest(model, 1)
    widths = uniform_widths(model.width_config(), 1.5, 1)
    wide = expand(model, widths, active_task=2)
    assert wide.width_config() == widths and masked_parameters(wide) > masked_parameters(model)
    assert wide(x, task=1).numpy().tobytes() == before[0]
    assert task_digest(wide, 1) == before[1]
    for old, new in zip(model.masked_layers(), wide.masked_layers()):
        lead = tuple(slice(0, d) for d in old.kernel.shape)
        assert new.kernel.numpy()[lead].tobytes() == old.kernel.numpy().tobytes()
        grown = np.ones(new.mask.shape, bool)
        grown[lead] = False
        assert grown.any() and np.all(new.mask.numpy()[grown] == 0)
        assert new.task_shape(1) == tuple(old.kernel.shape) and new.task_shape(2) == tuple(new.kernel.shape)
    clone = type(wide).from_config(wide.get_config()).build_variables()
    clone.set_weights(wide.get_weights())
    assert clone(x, task=1).numpy().tobytes() == before[0]


@pytest.fixture
def eager_for_vgg(request):
    """Tracing VGG16's training step takes ~10 s on 2 cores, its few eager steps ~1 s: VGG16 runs
    eagerly (the MLPs cover the traced step)."""
    tf.config.run_functions_eagerly(request.node.callspec.params["which"] == "vgg16_bn")
    yield
    tf.config.run_functions_eagerly(False)


@pytest.mark.parametrize("which", BACKBONES)
def test_training_a_second_task_leaves_the_first_bit_identical(which, eager_for_vgg):
    model_kwargs = BACKBONES[which][1]
    packer = Packer(BACKBONES[which][0](**model_kwargs, name=which), keras.optimizers.Adam(1e-2))
    x = RNG.normal(size=(16, *packer.model.image_shape)).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices((x, np.arange(16) % 3)).batch(16)
    packer.start_task(TaskSpec("one", 3))
    trainer = Trainer(packer, progress=False)
    trainer.train(batches, 1)
    packer.prune(0.5)
    record = packer.finish()
    first = packer.model(x, task=1).numpy().tobytes()
    packer.start_task(TaskSpec("two", 3))
    trainer = Trainer(packer, progress=False)
    losses = [trainer.train(batches, 1) for _ in range(8)]
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]    # one fixed batch: it learns it
    assert packer.model(x, task=1).numpy().tobytes() == first
    assert task_digest(packer.model, 1) == record.digest
