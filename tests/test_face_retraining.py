"""The face task retrains on a folder of identities through its Logits head with FaceNet's train_softmax.py
loss (cross-entropy + prelogits norm), and without such a folder prunes as imported."""
import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from paenet import tasks
from paenet.serving import task_outputs
from paenet.facenet_import import load_facenet
from paenet.models import InceptionResnetV1, TaskSpec
from paenet.models.inception_resnet_v1 import facenet_variables
from paenet.packing import Packer, claim_free_weights
from paenet.tasks.face import FaceLoss, training_classes
from paenet.training import Trainer

from test_face_task import make_lfw
from test_facenet_import import save_checkpoint
from tiny_models import TINY, tiny_backbone

# Identities in a non-sorted creation order, each its own grey level (so a crop's mean names its identity).
GREYS = {"n000300": 200, "n000100": 40, "n000200": 120}
SIZE = TINY["inception_resnet_v1"]["image_size"]      # 80, the smallest InceptionResnetV1 input


def make_training_folder(root: Path, images: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for name, grey in GREYS.items():
        for i in range(images):
            noise = rng.integers(-8, 9, (60, 60, 3))
            pixels = np.clip(grey + noise, 0, 255).astype(np.uint8)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name / f"{i:04d}_01.png")
    return root


def tiny_face_model(classes: int) -> InceptionResnetV1:
    model = tiny_backbone("inception_resnet_v1", tasks=[TaskSpec("face", classes)], bn_momentum=0.5).build_variables()
    claim_free_weights(model, 1)
    return model


@pytest.fixture
def face_data(tmp_path):
    """The face task's data with a training folder beside LFW (validation falls back to LFW folds)."""
    context = tasks.TaskContext(str(tmp_path), image_size=SIZE, batch_size=6, seed=3,
                                options={"face_pairs": str(make_lfw(tmp_path / "lfw")),
                                         "face_train": str(make_training_folder(tmp_path / "train"))})
    return context, tasks.get("face").load(context)


def test_training_batches_are_crops_labelled_by_sorted_identity(face_data):
    context, data = face_data
    assert data.sizes["train"] == 12 and data.sizes["train_identities"] == 3
    assert training_classes(context.data_dir, context.options) == 3
    x, y = next(iter(data.train))
    assert x.shape == (6, SIZE, SIZE, 3) and x.dtype == tf.float32
    sorted_greys = [GREYS[name] for name in sorted(GREYS)]             # label k = k-th identity by name
    means = np.asarray(x).mean(axis=(1, 2, 3)) * 128.0 + 127.5        # undo (x - 127.5) / 128
    np.testing.assert_allclose(means, [sorted_greys[k] for k in np.asarray(y)], atol=2.0)


def test_training_lowers_the_loss_and_moves_the_kernel_entries_the_face_task_owns(face_data):
    _, data = face_data
    model = tiny_face_model(3)
    packer = Packer(model, keras.optimizers.Adam(3e-3))
    packer.resume_task(1)
    trainer = Trainer(packer, data.loss, progress=False)
    packer.prune(0.5)                            # half of each layer's entries freed: they must stay 0
    x, y = next(iter(data.train))

    # In inference mode: in training mode a batch's own statistics (here a batch with no image of identity 2)
    # shift the grey levels that tell the identities apart.
    def loss():
        return float(data.loss(y, packer.model(x, task=1, training=False, outputs=FaceLoss.outputs)))

    layers = packer.model.masked_layers()
    before, loss_before = [layer.kernel.numpy().copy() for layer in layers], loss()
    head_before = packer.model.Logits.task_variables(1)[0].numpy().copy()
    trainer.train(data.train, 30)
    assert loss() < 0.8 * loss_before
    changed = []
    for layer, old in zip(layers, before):
        owned, new = layer.mask.numpy() == 1, layer.kernel.numpy()
        assert 0 < owned.mean() < 1, layer.name
        changed.append(new[owned] != old[owned])
        assert changed[-1].any(), layer.name
        np.testing.assert_array_equal(new[~owned], 0.0)
    # Not all: at 80 px the last blocks see 4 px and 1 px maps, whose outer 1x7 and 1x3 taps read padding.
    assert np.concatenate(changed).mean() > 0.9
    assert np.all(packer.model.Logits.task_variables(1)[0].numpy() != head_before)


def test_the_prelogits_norm_penalty_is_factor_times_the_mean_l1_norm(tmp_path):
    context = tasks.TaskContext(str(tmp_path), image_size=SIZE, options={
        "face_pairs": str(make_lfw(tmp_path / "lfw")), "face_train": str(make_training_folder(tmp_path / "train")),
        "face_prelogits_norm_factor": "0.25"})
    loss = tasks.get("face").load(context).loss
    assert loss.prelogits_norm_factor == 0.25 and FaceLoss(3).prelogits_norm_factor == 5e-4
    model = tiny_face_model(3)
    x = tf.random.stateless_uniform((4, SIZE, SIZE, 3), (0, 1), -1, 1)
    y = tf.constant([0, 2, 1, 2])
    logits, prelogits = model(x, task=1, training=True, outputs=FaceLoss.outputs)
    p, z = prelogits.numpy().astype(np.float64), logits.numpy().astype(np.float64)
    cross_entropy = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(4), y.numpy()])
    l1 = np.mean(np.sum(np.abs(p) + 1e-4, axis=1))
    assert l1 > 1.0
    np.testing.assert_allclose(float(FaceLoss(3, 0.0)(y, (logits, prelogits))), cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(float(loss(y, (logits, prelogits))), cross_entropy + 0.25 * l1, rtol=1e-5)


def test_the_centre_loss_pulls_centres_towards_the_prelogits():
    loss = FaceLoss(2, prelogits_norm_factor=0.0, center_factor=1.0, center_alfa=0.5)
    logits, prelogits = tf.zeros((2, 2)), tf.constant([[2.0, 0.0], [0.0, 4.0]])
    y = tf.constant([1, 1])
    first = float(loss(y, (logits, prelogits)))
    np.testing.assert_allclose(first, np.log(2) + np.mean(prelogits.numpy() ** 2), rtol=1e-6)   # centres at 0
    np.testing.assert_allclose(loss.centers.numpy(), [[0.0, 0.0], [1.0, 2.0]])   # += 0.5 * (p - c), each row


def test_without_a_training_folder_the_task_prunes_as_imported_and_says_so_once(tmp_path, caplog):
    context = tasks.TaskContext(str(tmp_path / "data"), image_size=SIZE,
                                options={"face_pairs": str(make_lfw(tmp_path / "lfw"))})
    assert training_classes(context.data_dir, context.options) == 0
    data = tasks.get("face").load(context)
    tasks.get("face").load(context)
    assert data.train is None and data.loss is None and data.sizes["train"] == 0
    assert caplog.text.count("pruned without retraining") == 1
    missing = tasks.TaskContext(str(tmp_path), image_size=SIZE, options={**context.options,
                                                                        "face_train": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match="face_train=.*nowhere"):
        tasks.get("face").load(missing)
    one = make_training_folder(tmp_path / "one")
    for name in ("n000100", "n000200"):
        for image in (one / name).iterdir():
            image.unlink()
    with pytest.raises(ValueError, match="face_train=.*one: 1 identities"):
        training_classes(None, {"face_train": str(one)})


def test_the_head_is_the_files_when_the_identities_match_else_fresh_and_the_face_serves_embeddings(tmp_path):
    model = tiny_face_model(3)
    values = {name: v.numpy() for name, v in facenet_variables(model).items()}
    prefix = save_checkpoint(tmp_path / "face.ckpt", values)
    same = load_facenet(prefix, logits=3, input_size=SIZE)
    np.testing.assert_array_equal(facenet_variables(same.model)["Logits/weights"].numpy(), values["Logits/weights"])
    fresh = load_facenet(prefix, logits=5, input_size=SIZE)
    assert fresh.model.task_specs[0].num_classes == 5 and fresh.unused == ("Logits/biases", "Logits/weights")
    assert load_facenet(prefix, logits=0, input_size=SIZE).model.task_specs[0].num_classes == 0
    x = tf.random.stateless_uniform((2, SIZE, SIZE, 3), (0, 2), -1, 1)
    served = task_outputs(same.model, 1)(x)
    assert list(served) == ["embeddings"]
    np.testing.assert_array_equal(served["embeddings"].numpy(), same.model(x, task=1, outputs="embeddings").numpy())


def test_a_facenet_workspace_trains_its_face_task_with_the_face_loss_in_every_phase(tmp_path, monkeypatch):
    from paenet.app import pack
    from paenet.config import PackingPlan, Settings
    values = {name: v.numpy() for name, v in facenet_variables(tiny_face_model(7)).items()}
    prefix = save_checkpoint(tmp_path / "face.ckpt", values)           # a 7-class head: a fresh 3-class one
    calls = []
    original = FaceLoss.__call__
    monkeypatch.setattr(FaceLoss, "__call__", lambda self, y, outputs: calls.append(1) or original(self, y, outputs))
    options = {"face_pairs": str(make_lfw(tmp_path / "lfw")), "face_train": str(make_training_folder(tmp_path / "ids"))}
    status, summary = pack(Settings(str(tmp_path / "ws"), "face", data_dir=str(tmp_path), task_options=options,
                                    base="facenet", facenet=prefix, bn_momentum=0.5, batch_size=6, goal=0.0,
                                    progress=False, plan=PackingPlan(train_steps=2, targets=(0.5,),
                                                                     steps_per_round=2, prune_steps=1, frequency=1)))
    assert status == 0 and summary["sizes"]["train"] == 12
    assert [stage for stage, _ in summary["history"]] == ["train", "prune 0.5"]
    assert calls                                                        # traced by the packer's train step
    state = (tmp_path / "ws" / "packing" / "state.json").read_text()
    assert '"num_classes": 3' in state


def test_training_data_given_after_a_headless_face_task_was_created_is_refused_in_one_line(tmp_path):
    """A FaceNet workspace created without training identities has a face task without a head; giving it
    identities later is a usage error naming what to do, not a failure inside the train step."""
    from paenet.app import GOAL_UNREACHABLE, UsageError, pack
    from paenet.config import PackingPlan, Settings
    values = {name: v.numpy() for name, v in facenet_variables(tiny_face_model(7)).items()}
    prefix = save_checkpoint(tmp_path / "face.ckpt", values)
    pairs = {"face_pairs": str(make_lfw(tmp_path / "lfw"))}
    settings = Settings(str(tmp_path / "ws"), "face", data_dir=str(tmp_path), task_options=pairs, base="facenet",
                        facenet=prefix, batch_size=6, goal=1.0, progress=False,
                        plan=PackingPlan(train_steps=2, targets=(0.5,), steps_per_round=2, prune_steps=1, frequency=1))
    assert pack(settings)[0] == GOAL_UNREACHABLE           # no training data: the task stays as imported
    trained = {**pairs, "face_train": str(make_training_folder(tmp_path / "ids"))}
    with pytest.raises(UsageError, match="task 'face' was imported without a head.*--face_train"):
        pack(dataclasses.replace(settings, task_options=trained, goal=0.0))
