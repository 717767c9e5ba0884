"""The SavedModel export serves every task bit-identically and stores each variable once; the compressed
export rebuilds the model exactly in fewer bytes; the paper's size accounting matches a hand computation."""
import json
import math
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from packed_workspace import make_workspace
from paenet.evaluation import model_size
from paenet.compressed import load_compressed, mask_bits, pack_bits, unpack_bits
from paenet.export import COMPRESSED, SAVEDMODEL, export_savedmodel, export_workspace, select_tasks
from paenet.models import SmallCNN, TaskSpec, variable_key
from paenet.records import IntegrityError, TaskRecord, task_digest
from paenet.training import make_predict_fn
from paenet.workspace import WorkspaceError, locate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return make_workspace(str(tmp_path_factory.mktemp("export")))


@pytest.fixture(scope="module")
def exported(packed):
    sizes = export_workspace(packed["workspace"], compressed=True)
    exports = os.path.join(packed["workspace"], "exports")
    return {"sizes": sizes, "savedmodel": os.path.join(exports, SAVEDMODEL),
            "compressed": os.path.join(exports, COMPRESSED)}


def _bits(x) -> bytes:
    return np.asarray(x).tobytes()


def _answer(outputs):
    """A signature's numbers: a classifier's probabilities, a feature task's embeddings."""
    return outputs["probabilities" if "probabilities" in outputs else "embeddings"]


def test_one_signature_per_task_bit_identical_to_the_in_memory_model(packed, exported):
    model, images = packed["packer"].model, packed["images"]
    loaded = tf.saved_model.load(exported["savedmodel"])
    assert set(loaded.signatures) == {f"{t}{s}" for t in ("face", "age", "gender") for s in ("", "_uint8", "_bytes")} \
        | {"serving_default"}
    for task, spec in enumerate(model.task_specs, start=1):
        signature = loaded.signatures[spec.name]
        (spec_in,) = signature.structured_input_signature[1].values()
        assert spec_in.shape.as_list() == [None, 16, 16, 3] and spec_in.dtype == tf.float32
        outputs = signature(images=tf.constant(images))
        # The in-memory model as paenet evaluates it: a tf.function of the task's inference pass.
        reference = make_predict_fn(model, task)(images)
        if spec.num_classes:
            assert sorted(outputs) == ["classes", "probabilities"]
            assert outputs["classes"].numpy().tolist() == [[c.encode() for c in spec.class_names]] * len(images)
            reference = tf.nn.softmax(reference)
            np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-6)
        else:
            assert list(outputs) == ["embeddings"]
        value = _answer(outputs)
        assert value.shape == (len(images), spec.num_classes or model.dense_units)
        assert _bits(value) == _bits(reference), spec.name
    default = loaded.signatures["serving_default"](images=tf.constant(images))["embeddings"]
    assert _bits(default) == _bits(make_predict_fn(model, 1)(images))


def test_eager_calls_match_bit_for_bit_with_the_remapper_off(packed, exported):
    """Eager execution runs conv, BatchNorm and ReLU one by one, graphs fuse them (Grappler's remapper):
    the same numbers up to rounding by default, the same bits with the remapper off."""
    model, images = packed["packer"].model, packed["images"]

    def eager(task, spec):
        logits = model(images, task=task, training=False)
        return tf.nn.softmax(logits) if spec.num_classes else logits

    loaded = tf.saved_model.load(exported["savedmodel"])
    for task, spec in enumerate(model.task_specs, start=1):
        value = _answer(loaded.signatures[spec.name](images=tf.constant(images)))
        np.testing.assert_allclose(value.numpy(), eager(task, spec).numpy(), rtol=0, atol=1e-5)
    tf.config.optimizer.set_experimental_options({"remapping": False})
    try:
        loaded = tf.saved_model.load(exported["savedmodel"])
        for task, spec in enumerate(model.task_specs, start=1):
            value = _answer(loaded.signatures[spec.name](images=tf.constant(images)))
            assert _bits(value) == _bits(eager(task, spec)), spec.name
    finally:
        tf.config.optimizer.set_experimental_options({"remapping": True})


def _checkpoint_tensors(savedmodel):
    reader = tf.train.load_checkpoint(os.path.join(savedmodel, "variables", "variables"))
    names = [n for n in reader.get_variable_to_shape_map() if n != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    return reader, [reader.get_tensor(n) for n in names]


def test_the_savedmodel_stores_every_variable_once(packed, exported):
    model = packed["packer"].model
    reader, tensors = _checkpoint_tensors(exported["savedmodel"])
    # Exactly the model's variables, each once (ExportArchive.track would store each twice).
    assert sorted(_bits(t) for t in tensors) == sorted(_bits(v.numpy()) for v in model.variables)
    stored = sum(t.nbytes for t in tensors)
    variables_dir = os.path.join(exported["savedmodel"], "variables")
    data = sum(os.path.getsize(os.path.join(variables_dir, f)) for f in os.listdir(variables_dir)
               if f.startswith("variables.data"))
    object_graph = len(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    assert stored + object_graph <= data <= stored + object_graph + 1024
    # No weights baked into the graph as constants: the largest numeric constant is far below the smallest
    # kernel (string constants hold the checkpoint's own names).
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(exported["savedmodel"], "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for fn in graph.library.function for n in fn.node_def]
    largest = max(n.attr["value"].tensor.ByteSize() for n in nodes
                  if n.op == "Const" and n.attr["value"].tensor.dtype != tf.string.as_datatype_enum)
    assert largest < 256 < min(l.kernel.numpy().nbytes for l in model.masked_layers())
    assert exported["sizes"]["savedmodel_bytes"] == model_size.bytes_on_disk(exported["savedmodel"])


def test_compressed_round_trip_is_exact(packed, exported):
    packer, images = packed["packer"], packed["images"]
    model, records = load_compressed(exported["compressed"])
    original = {variable_key(v): v.numpy() for v in packer.model.variables}
    assert {variable_key(v): _bits(v.numpy()) for v in model.variables} == \
        {k: _bits(v) for k, v in original.items()}
    for task in range(1, model.num_tasks + 1):
        assert _bits(model(images, task=task)) == _bits(packer.model(images, task=task))
        assert task_digest(model, task) == packer.records[task - 1].digest
    assert [r.to_dict() for r in records] == [r.to_dict() for r in packer.records]
    assert model.width_config() == packer.model.width_config()


def test_compressed_file_holds_packed_masks_owned_weights_and_little_else(packed, exported):
    model = packed["packer"].model
    path, sizes = exported["compressed"], exported["sizes"]
    assert sizes["compressed_bytes"] == os.path.getsize(path) < sizes["savedmodel_bytes"] / 2
    assert mask_bits(model.num_tasks) == 2
    owned = sum(r["owned_weights"] for r in sizes["paper_accounting"])
    with np.load(path) as archive:
        members = {name: archive[name] for name in archive.files}
    for layer in model.masked_layers():
        key = variable_key(layer.kernel).rsplit("/", 1)[0]
        assert members[f"mask/{key}"].nbytes == math.ceil(layer.mask.numpy().size * 2 / 8)
    kernels = [m for name, m in members.items() if name.startswith("kernel/")]
    assert sum(k.size for k in kernels) == owned          # every owned weight, no free one
    free = sum(int(np.sum(l.mask.numpy() == 0)) for l in model.masked_layers())
    assert free > 0 and owned + free == sum(l.mask.numpy().size for l in model.masked_layers())
    payload = sum(m.nbytes for m in members.values())
    with zipfile.ZipFile(path) as z:
        assert len(z.infolist()) == len(members)
    # What is not payload is the zip and .npy framing: at most 300 bytes per member.
    assert payload < os.path.getsize(path) <= payload + 300 * len(members)


def test_compressed_loader_detects_a_changed_weight(packed, exported, tmp_path):
    with np.load(exported["compressed"]) as archive:
        members = {name: archive[name] for name in archive.files}
    members["kernel/conv2"] = members["kernel/conv2"].copy()
    members["kernel/conv2"][0] += 1.0
    np.savez(tmp_path / "changed.npz", **members)
    with pytest.raises(IntegrityError, match="digest mismatch"):
        load_compressed(str(tmp_path / "changed.npz"))


def test_mask_bits_and_bit_packing():
    assert [mask_bits(n) for n in (1, 2, 3, 4, 7, 8, 255)] == [1, 2, 2, 3, 3, 4, 8]
    assert pack_bits(np.array([1, 2, 3, 0], np.uint8), 2).tolist() == [0b01101100]
    rng = np.random.default_rng(1)
    for bits in range(1, 9):
        values = rng.integers(0, 2 ** bits, size=1001).astype(np.uint8)
        packed = pack_bits(values, bits)
        assert packed.size == math.ceil(1001 * bits / 8)
        assert np.array_equal(unpack_bits(packed, bits, 1001), values)


def test_paper_accounting_against_a_hand_computation():
    model = SmallCNN(widths=(2, 4), dense_units=3, input_shape=(8, 8, 3),
                     tasks=[TaskSpec("face", 0), TaskSpec("age", 2)]).build_variables()
    # conv1: 54 entries, conv2: 72, dense: 12. Owners set by hand, in layer order.
    owners = {"conv1": [1] * 20 + [2] * 30 + [0] * 4, "conv2": [2] * 32 + [1] * 40, "dense": [1] * 6 + [2] * 2 + [0] * 4}
    for layer in model.masked_layers():
        layer.mask.assign(np.array(owners[layer.name], np.uint8).reshape(layer.mask.shape))
    face = TaskRecord(task=1, name="face", num_classes=0, sharing="cumulative", digest="",
                      owned={"conv1": 20, "conv2": 40, "dense": 6}, space={"conv1": 25, "conv2": 50, "dense": 10})
    rows = model_size.paper_accounting(model, [face])
    # Task 1 owns 66 weights; its BN: (2 + 4 + 3) channels x beta/mean/variance = 27 floats = 108 B.
    # Task 2 owns 64; BN 108 B and a head of 3x2 + 2 floats = 32 B.
    assert [r["owned_weights"] for r in rows] == [66, 64]
    assert [r["specific_bytes"] for r in rows] == [108, 140]
    assert [r["module_bytes"] for r in rows] == [66 * 5 + 108, 64 * 5 + 140]
    assert [r["cumulative_bytes"] for r in rows] == [438, 438 + 460]
    # A separate network per task: all 138 kernel weights x 4 B plus its own variables.
    assert [r["separate_bytes"] for r in rows] == [552 + 108, 552 + 108 + 552 + 140]
    assert rows[1]["ratio"] == pytest.approx(898 / 1352)
    # The face task's pruned share comes from its record (the original printed 0): 19 of 85 released.
    assert rows[0]["pruned_fraction"] == pytest.approx(19 / 85) and rows[1]["pruned_fraction"] is None
    assert model_size.ownership(model)["dense"].tolist() == [4, 6, 2]
    # Against copies of a smaller original network (the model was widened since): 100 weights each.
    rows = model_size.paper_accounting(model, [face], original_weights=100)
    assert [r["separate_bytes"] for r in rows] == [400 + 108, 400 + 108 + 400 + 140]
    assert [r["cumulative_bytes"] for r in rows] == [438, 898]


def test_separate_models_are_copies_of_the_network_before_its_expansion(packed, exported):
    rows, model = exported["sizes"]["paper_accounting"], packed["packer"].model
    # SmallCNN widths (16, 32, 64), dense 64, RGB: 3*3*3*16 + 3*3*16*32 + 3*3*32*64 + 64*64 weights.
    assert packed["packer"].base_parameters == 432 + 4608 + 18432 + 4096
    specific = [sum(v.nbytes for v in model.task_values(t).values()) for t in (1, 2, 3)]
    assert [r["specific_bytes"] for r in rows] == specific
    assert rows[2]["separate_bytes"] - rows[1]["separate_bytes"] == 27568 * 4 + specific[2]
    assert sum(l.mask.numpy().size for l in model.masked_layers()) > 27568   # it was expanded


def test_export_of_chosen_tasks_stores_only_what_they_read(packed, tmp_path):
    model = packed["packer"].model
    path = export_savedmodel(model, str(tmp_path / "age_only"), tasks=["age"])
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"age", "age_uint8", "age_bytes", "serving_default"}
    _, tensors = _checkpoint_tensors(path)
    others = model.task_variables(1) + model.task_variables(3)
    assert len(tensors) == len(model.variables) - len(others)


def test_clear_errors(packed, tmp_path):
    model = packed["packer"].model
    with pytest.raises(ValueError, match="no task named 'smile'"):
        select_tasks(model, ["age", "smile"])
    with pytest.raises(ValueError, match=r"tasks \['smile'\] are not finished tasks"):
        export_workspace(packed["workspace"], output=str(tmp_path / "x"), tasks=["smile"])
    with pytest.raises(WorkspaceError, match="no such workspace folder"):
        locate(str(tmp_path / "missing"))
    with pytest.raises(WorkspaceError, match="is not a PAENet workspace"):
        locate(str(tmp_path))
    with pytest.raises(WorkspaceError, match="give --output"):
        locate(os.path.join(packed["workspace"], "packing")).output(None, "exports")
    reserved = SmallCNN(widths=(2,), dense_units=2, input_shape=(8, 8, 3),
                        tasks=[TaskSpec("variables", 2)]).build_variables()
    with pytest.raises(ValueError, match="cannot name a signature"):
        export_savedmodel(reserved, str(tmp_path / "reserved"))


def _command(*args):
    return subprocess.run([sys.executable, "-m", "paenet.export", *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_command_line(packed, tmp_path):
    out = tmp_path / "out"
    done = _command(f"--workspace={os.path.join(packed['workspace'], 'packing')}", f"--output={out}",
                    "--compressed")
    assert done.returncode == 0, done.stderr
    assert "SavedModel:" in done.stdout and "compressed:" in done.stdout and "gender" in done.stdout
    assert {p.name for p in out.iterdir()} == {SAVEDMODEL, COMPRESSED, "sizes.json"}
    failed = _command(f"--workspace={tmp_path / 'missing'}")
    assert failed.returncode != 0
    assert failed.stderr.strip().splitlines()[-1] == f"paenet.export: {tmp_path / 'missing'}: no such workspace folder"


def test_an_unchanged_export_repeats_its_bytes_and_leaves_no_stale_file(packed, tmp_path):
    """Two exports in fresh processes: the same bytes but fingerprint.pb's uuid, which TensorFlow draws
    at random at every save (so the SavedModel's byte count may differ by its digits); files mode 0644
    under the usual umask; an export without --compressed removes an earlier compressed.npz."""
    from tensorflow.core.protobuf import fingerprint_pb2

    from paenet.fileio import FILE_MODE
    packing = os.path.join(packed["workspace"], "packing")
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        done = _command(f"--workspace={packing}", f"--output={out}", "--compressed")
        assert done.returncode == 0, done.stderr
    files = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(second)) for p in second.rglob("*") if p.is_file())
    fingerprints = []
    for name in files:
        a, b = (first / name).read_bytes(), (second / name).read_bytes()
        assert (first / name).stat().st_mode & 0o777 == FILE_MODE, name
        if name.endswith("fingerprint.pb"):
            fingerprints = [fingerprint_pb2.FingerprintDef.FromString(x) for x in (a, b)]
            for f in fingerprints:
                f.ClearField("uuid")
            assert fingerprints[0] == fingerprints[1]
        elif name == "sizes.json":
            sizes = [json.loads(x) for x in (a, b)]
            assert abs(sizes[0].pop("savedmodel_bytes") - sizes[1].pop("savedmodel_bytes")) <= 2
            assert sizes[0] == sizes[1]
        else:
            assert a == b, name
    assert fingerprints and (first / COMPRESSED).exists()
    export_workspace(packing, str(first))
    assert not (first / COMPRESSED).exists() and (first / SAVEDMODEL).is_dir()
