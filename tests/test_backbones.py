"""One harness over every registered backbone, each in a tiny configuration of the app's settings
(``tiny_models.TINY``): created as the app creates it, it packs two tasks (the second picking) with the
first bit-identical, learns, round-trips its config, gains a task carrying every value exactly, keeps
finished tasks bit-identical through expansion, and the SavedModel serves them."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from paenet import tasks  # noqa: F401  (the face task registers the facenet backbone)
from paenet.expansion import ExpansionPolicy, expand, masked_parameters, uniform_widths
from paenet.export import export_savedmodel
from paenet.models import BACKBONES, MLP, VGG16BN, ResNet18, TaskSpec, get_backbone, variable_key
from paenet.packing import Packer
from paenet.records import task_digest
from paenet.training import Trainer
from randomized import randomize
from tiny_models import TINY, tiny_backbone, tiny_settings

RNG = np.random.default_rng(11)
TASKS = [TaskSpec("one", 3), TaskSpec("two", 4)]


def test_every_backbone_the_app_creates_has_a_tiny_configuration_here():
    """(facenet imports its network from a file: tests/test_face_retraining.py creates it from settings.)"""
    created = {name for name, b in BACKBONES.items() if b.load is None}
    assert created == {tiny_settings(case).base for case in TINY}


@pytest.fixture(params=sorted(TINY))
def case(request):
    return request.param


def _inputs(model, n=4):
    return RNG.normal(size=(n, *model.image_shape)).astype(np.float32)


def test_packs_two_tasks_the_first_bit_identical_then_grows_and_serves(case, tmp_path):
    settings = tiny_settings(case)
    model, made = get_backbone(settings.base).create(settings, name="bb")
    assert made["image_size"] == settings.image_size and isinstance(model, get_backbone(settings.base).cls)
    packer = Packer(model, keras.optimizers.Adam(1e-2))
    x = _inputs(packer.model, 8)
    data = tf.data.Dataset.from_tensors((x, np.arange(8) % 3))
    packer.start_task(TaskSpec("one", 3))
    Trainer(packer, progress=False).train(data, 2)
    packer.prune(0.5)
    record = packer.finish()
    first = packer.model(x, task=1).numpy().tobytes()
    packer.start_task(TaskSpec("two", 3), picks=True)
    trainer = Trainer(packer, progress=False)
    losses = [trainer.train(data, 1) for _ in range(6)]
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]     # one fixed batch: it learns it
    packer.finish()
    model = packer.model
    assert model(x, task=1).numpy().tobytes() == first and task_digest(model, 1) == record.digest

    clone = type(model).from_config(model.get_config()).build_variables()
    assert clone.get_config() == model.get_config()
    grown = model.with_tasks([*model.task_specs, TaskSpec("three", 2)])
    old = {variable_key(v): v.numpy() for v in model.variables}
    assert all(v.numpy().tobytes() == old[variable_key(v)].tobytes() for v in grown.variables
               if variable_key(v) in old)
    expected = {t: model(x, task=t).numpy() for t in (1, 2)}
    for task in (1, 2):
        assert grown(x, task=task).numpy().tobytes() == expected[task].tobytes()

    packer.start_task(TaskSpec("three", 3), picks=True)
    assert packer.expand(ExpansionPolicy("uniform", 1.5, 3.0)) is not None
    Trainer(packer, progress=False).train(data, 2)
    packer.finish()
    for t in (1, 2):
        assert packer.model(x, task=t).numpy().tobytes() == expected[t].tobytes()
    served = tf.saved_model.load(export_savedmodel(packer.model, str(tmp_path / "saved")))
    for t, name in ((1, "one"), (2, "two")):
        out = served.signatures[name](images=tf.constant(x))["probabilities"].numpy()
        np.testing.assert_allclose(out, keras.ops.softmax(expected[t]).numpy(), rtol=0, atol=1e-6)


def test_keras_serialization_round_trip(case):
    model = tiny_backbone(case, tasks=TASKS, name=case).build_variables()
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert copy.built and copy.get_config() == model.get_config()
    assert sorted(variable_key(v) for v in copy.variables) == sorted(variable_key(v) for v in model.variables)


def test_with_tasks_carries_every_value_exactly(case):
    model = randomize(tiny_backbone(case, tasks=TASKS, name=case).build_variables(), RNG)
    x = _inputs(model)
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


def test_expansion_keeps_old_values_in_leading_slices_and_new_weights_free(case):
    model = randomize(tiny_backbone(case, tasks=TASKS, name=case).build_variables(), RNG)
    x = _inputs(model)
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


def test_full_size_layer_shapes():
    mlp = MLP(tasks=TASKS).build_variables()        # DEN's 784-312-128
    assert [tuple(l.kernel.shape) for l in mlp.masked_layers()] == [(784, 312), (312, 128)]
    assert mlp(np.zeros((2, 28, 28, 1), np.float32), task=2).shape == (2, 4)
    vgg = VGG16BN(tasks=TASKS).build_variables()    # CPG's VGG16-BN for CIFAR: 33.6 M masked weights
    assert masked_parameters(vgg) == 14_710_464 + 512 * 4096 + 4096 * 4096
    resnet = ResNet18(tasks=TASKS).build_variables()   # CIFAR ResNet-18: 11.17 M parameters with a 10-class fc
    assert masked_parameters(resnet) == 11_173_962 - (512 * 10 + 10) - 2 * 4_800     # less fc and BatchNorm
    assert resnet(np.zeros((2, 32, 32, 3), np.float32), task=1).shape == (2, 3)
    with pytest.raises(ValueError, match="VGG16 has 13 convolutions; got 2 widths"):
        VGG16BN(widths=(4, 8))
    with pytest.raises(ValueError, match="ResNet-18 has 4 stages; got 2 widths"):
        ResNet18(widths=(4, 8))


@pytest.mark.parametrize("flags, named", [
    (["--base=resnet"], "--base=resnet: must be one of facenet, inception_resnet_v1, mlp, resnet18, small_cnn, "),
    (["--base=mlp", "--backbone_option=width_multiplier=2"], "--backbone_option=width_multiplier: --base=mlp has no "
                                                            "such option (its options: batch_norm, "
                                                            "expand_features)"),
    (["--base=inception_resnet_v1", "--backbone_option=block_counts=1,x"], "--backbone_option=block_counts=1,x: "),
    (["--backbone_option=batch_norm"], "--backbone_option=batch_norm: must be NAME=VALUE"),
    (["--base=vgg16_bn", "--widths=4,8"], "--base=vgg16_bn: VGG16 has 13 convolutions; got 2 widths"),
])
def test_the_app_refuses_a_base_it_cannot_create_in_one_line_leaving_nothing(flags, named, tmp_path, capsys):
    from main_in_process import run_main
    workspace = tmp_path / "ws"
    status, err = run_main([f"--workspace={workspace}", "--task_module=tiny_tasks", "--task=tiny_a", "--goal=0.5",
                            *flags], capsys)
    assert status == 1 and len(err) == 1 and err[0].startswith(f"paenet.main: error: {named}"), err
    assert not workspace.exists()


def test_list_backbones_names_every_registered_one_with_its_options(capsys):
    from main_in_process import FLAGS, paenet_main
    FLAGS.unparse_flags()
    FLAGS(["paenet.main", "--list_backbones"])
    try:
        assert paenet_main.run() == 0
    finally:
        FLAGS.unparse_flags()
    lines = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert set(lines) == set(BACKBONES)
    assert lines["inception_resnet_v1"] == "InceptionResnetV1\toptions: width_multiplier=1.0, block_counts=5,10,5"
    assert lines["facenet"] == "InceptionResnetV1\timported from a file"
