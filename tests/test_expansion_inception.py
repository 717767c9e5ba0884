"""Expansion of Inception-ResNet-v1: residual-stream convs and concatenations included, every finished task
(the imported FaceNet among them) stays bit-identical."""
import numpy as np
import pytest
import tensorflow as tf

from paenet.checkpoint import load_packing, save_packing
from paenet.expansion import ExpansionPolicy, expand, masked_parameters, uniform_widths
from paenet.facenet_import import load_facenet
from paenet.layers.masked import permuted_rows
from paenet.models import InceptionResnetV1, TaskSpec
from paenet.models.inception_resnet_v1 import branch_major_order, ordered_concat
from paenet.packing import Packer
from paenet.records import task_digest
from paenet.training import Trainer
from randomized import randomize
from tiny_models import tiny_backbone

RNG = np.random.default_rng(11)


def _random_two_task_model():
    model = tiny_backbone("inception_resnet_v1", name="irv1",
                          tasks=[TaskSpec("face", 0), TaskSpec("other", 3)]).build_variables()
    return randomize(model, RNG, scale=0.1)


def test_expansions_keep_the_old_task_and_lay_concatenations_out_round_by_round():
    model = _random_two_task_model()
    x = RNG.normal(size=(3, 80, 80, 3)).astype(np.float32)
    face, digest, other = model(x, task=1).numpy(), task_digest(model, 1), model(x, task=2).numpy()
    wide = model
    for _ in range(2):
        wide = expand(wide, uniform_widths(wide.width_config(), 1.5, 1), active_task=2)
        assert wide(x, task=1).numpy().tobytes() == face.tobytes()
        assert task_digest(wide, 1) == digest
    # Every weight the expansions added is free; zeroed, the active task computes what it did before:
    # its old weights read the same channels, so the concatenations keep old channels in place.
    for layer in wide.masked_layers():
        fresh = layer.mask.numpy() == 0
        assert fresh.any()
        layer.kernel.assign(np.where(fresh, 0.0, layer.kernel.numpy()).astype(np.float32))
    np.testing.assert_allclose(wide(x, task=2).numpy(), other, rtol=1e-5, atol=1e-5)
    same_widths = InceptionResnetV1(input_size=80, widths={k.replace(".", "/"): v for k, v in
                                                           wide.width_config().items()},
                                    block_counts=(1, 1, 1), embedding_size=model.embedding_size,
                                    tasks=[TaskSpec("face", 0)]).build_variables()
    assert masked_parameters(wide) == masked_parameters(same_widths) > masked_parameters(model)
    assert len(wide.width_history) == 2 and wide.width_history[0] == model.widths


def test_branch_major_order_finds_every_channel_of_the_round_by_round_layout():
    rounds = ((2, 3, 1), (3, 5, 1), (4, 6, 2))
    for widths in ((2, 3, 1), (3, 5, 1), (4, 6, 2)):        # tasks finished after 0, 1 and 2 expansions
        xs = [tf.constant(RNG.normal(size=(2, 3, 3, w)).astype(np.float32)) for w in widths]
        order = branch_major_order(widths, rounds)
        assert (order is None) == (widths == rounds[0])
        laid_out = ordered_concat(xs, rounds).numpy()
        plain = tf.concat(xs, -1).numpy()
        assert (laid_out if order is None else laid_out[..., list(order)]).tobytes() == plain.tobytes()


def test_permuted_rows_gradient_is_the_inverse_permutation():
    kernel = tf.constant(RNG.normal(size=(1, 1, 5, 3)).astype(np.float32))
    upstream = tf.constant(RNG.normal(size=(1, 1, 5, 3)).astype(np.float32))
    order = (3, 0, 4, 1, 2)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(kernel)
        ours, gathered = permuted_rows(kernel, order), tf.gather(kernel, order, axis=2)
    assert ours.numpy().tobytes() == gathered.numpy().tobytes()
    assert tape.gradient(ours, kernel, upstream).numpy().tobytes() == tf.convert_to_tensor(
        tape.gradient(gathered, kernel, upstream)).numpy().tobytes()


def test_a_task_finished_after_an_expansion_is_bit_identical_after_the_next():
    """Its blocks' concatenations are permuted against the round-by-round layout (not so for task 1)."""
    once = _random_two_task_model()
    once = expand(once, uniform_widths(once.width_config(), 1.5, 1), active_task=2)
    once = once.with_tasks([*once.task_specs, TaskSpec("third", 2)])
    x = RNG.normal(size=(2, 80, 80, 3)).astype(np.float32)
    second, digest = once(x, task=2).numpy(), task_digest(once, 2)
    twice = expand(once, uniform_widths(once.width_config(), 1.5, 1), active_task=3)
    assert twice(x, task=2).numpy().tobytes() == second.tobytes()
    assert task_digest(twice, 2) == digest
    assert any(branch_major_order(r[-2], r) for r in twice.concat_rounds)


@pytest.fixture(scope="module")
def expanded_facenet(facenet_dir, facenet_reference):
    """The imported FaceNet at a reduced input size as finished task 1; task 2 expanded, trained, pruned."""
    imported = load_facenet(facenet_dir / "20180402-114759.pb", input_size=96)
    packer = Packer(imported.model, "adam", records=[imported.record()])
    faces = tf.image.resize(facenet_reference["faces_inputs"], (96, 96)).numpy()
    before = (packer.model(faces, task=1).numpy(), packer.records[0].digest)
    packer.start_task(TaskSpec("faces", 5))
    trainer = Trainer(packer, progress=False)
    event = packer.expand(ExpansionPolicy("uniform", ratio=1.2, cap=2.0))
    labels = np.arange(5)
    train = tf.data.Dataset.from_tensors((faces, labels))
    trainer.train(train, 2)
    packer.prune(0.3)
    trainer.train(train, 1)
    packer.finish()
    return packer, faces, before, event


def test_imported_facenet_is_bit_identical_after_expansion_training_and_pruning(expanded_facenet):
    packer, faces, (embeddings, digest), event = expanded_facenet
    assert event is not None and masked_parameters(packer.model) == event["parameters"]
    assert event["multiple"] == 8 and all(w % 8 == 0 for w in event["widths"].values() if w >= 64)
    assert packer.model(faces, task=1).numpy().tobytes() == embeddings.tobytes()
    assert task_digest(packer.model, 1) == digest


def test_expanded_facenet_round_trips_through_save_and_load(expanded_facenet, tmp_path):
    packer, faces, (embeddings, _), _ = expanded_facenet
    save_packing(packer, tmp_path / "packed")
    loaded = load_packing(tmp_path / "packed")
    assert loaded.model(faces, task=1).numpy().tobytes() == embeddings.tobytes()
    assert loaded.model(faces, task=2).numpy().tobytes() == packer.model(faces, task=2).numpy().tobytes()
