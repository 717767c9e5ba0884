"""The LiteRT export: one .tflite with a signature per task, read by the ai-edge-litert interpreter, each
float output within its layout's tolerance of the SavedModel; the shared layout stores every kernel once;
int8 reports each classifier's top-1 on its labelled held-out split before and after (else its agreement)
and is refused beyond the tolerance unless forced."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from packed_workspace import make_workspace
from paenet import litert
from paenet.data.preprocessing import fixed_standardization
from paenet.export import (LITERT, LITERT_INT8, SAVEDMODEL, export_savedmodel, format_sizes,
                           held_out_splits)
from paenet.workspace import Workspace, locate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("litert")
    packed = make_workspace(str(root))
    model = packed["packer"].model
    savedmodel = tf.saved_model.load(export_savedmodel(model, str(root / SAVEDMODEL)))
    return {**packed, "model": model, "savedmodel": savedmodel, "root": root,
            "models": {layout: litert.convert(model, [1, 2, 3], layout) for layout in litert.LAYOUTS}}


@pytest.mark.parametrize("layout", litert.LAYOUTS)
def test_every_signature_answers_as_the_savedmodel_within_the_layouts_tolerance(packed, layout):
    interpreter = litert.interpreter(packed["models"][layout])
    assert set(interpreter.get_signature_list()) == {"face", "age", "gender"}
    images = packed["images"]
    for spec in packed["model"].task_specs:
        expected = packed["savedmodel"].signatures[spec.name](images=tf.constant(images))
        got = litert.run(interpreter, spec.name, images)
        assert set(got) == set(expected)
        for key, value in expected.items():
            if value.dtype == tf.string:
                assert got[key].tolist() == value.numpy().tolist() == [[c.encode() for c in spec.class_names]] * len(images)
            else:
                difference = np.abs(got[key] - value.numpy()).max()
                assert difference <= litert.TOLERANCE[layout], (spec.name, key, difference)


def test_the_shared_layout_stores_each_kernel_and_mask_once(packed):
    """One copy of the kernels: less than the kernels and masks twice over, where per-task constants hold a
    kernel per task (three tasks here, the first two at the width before the expansion)."""
    layers = packed["model"].masked_layers()
    kernels = sum(l.kernel.numpy().nbytes for l in layers)
    masks = sum(l.mask.numpy().nbytes for l in layers)
    shared, constants = (len(packed["models"][layout]) for layout in ("shared", "constants"))
    assert kernels + masks < shared < 2 * kernels
    assert constants > shared + kernels / 2


def test_int8_reports_agreement_and_is_refused_below_it_unless_forced(packed, tmp_path, monkeypatch):
    model, images = packed["model"], {t: packed["images"] for t in (1, 2, 3)}
    result = litert.export(model, str(tmp_path / "int8.tflite"), [1, 2, 3], "constants", images, int8=True)
    assert result["bytes"] < len(packed["models"]["constants"]) / 2
    assert all(0.9 <= figures["agreement"] <= 1.0 for figures in result["check"].values())
    monkeypatch.setattr(litert, "INT8_AGREEMENT", 1.01)
    with pytest.raises(litert.LiteRTError, match="below 1.01: not written"):
        litert.export(model, str(tmp_path / "refused.tflite"), [2], "constants", images, int8=True)
    assert not (tmp_path / "refused.tflite").exists()
    litert.export(model, str(tmp_path / "forced.tflite"), [2], "constants", images, int8=True, force=True)
    assert set(litert.interpreter((tmp_path / "forced.tflite").read_bytes()).get_signature_list()) == {"age"}
    with pytest.raises(ValueError, match="constants layout only"):
        litert.convert(model, [2], "shared", images)


def _held_out(packed, tasks, batch=10):
    """Task number -> ("val", batches of the fixture's evaluation images and their labels)."""
    specs = packed["model"].task_specs
    return {t: ("val", tf.data.Dataset.from_tensor_slices(
        (packed["images"], packed["labels"] % specs[t - 1].num_classes)).batch(batch)) for t in tasks}


def test_int8_judges_each_classifier_by_its_top1_on_the_labels_before_and_after(packed, tmp_path, monkeypatch):
    """Both accuracies are the packed model's and the written int8 model's top-1 against the labels; a
    classifier with labels is judged by their drop, not by its agreement; a tolerance below the measured
    drop refuses the model (nothing written) unless forced."""
    model, images = packed["model"], {t: packed["images"] for t in (2, 3)}
    monkeypatch.setattr(litert, "INT8_AGREEMENT", 1.01)      # would refuse any task judged by its agreement
    path = tmp_path / "int8.tflite"
    result = litert.export(model, str(path), [2, 3], "constants", images, int8=True,
                           held_out=_held_out(packed, [2, 3]), max_drop=1.0)
    interpreter = litert.interpreter(path.read_bytes())
    for t in (2, 3):
        spec, figures = model.task_specs[t - 1], result["check"][model.task_specs[t - 1].name]
        labels = packed["labels"] % spec.num_classes
        float_top1 = np.argmax(model(packed["images"], task=t, training=False), axis=1)
        answers = litert.run(interpreter, spec.name, packed["images"])
        int8_top1 = answers["probabilities"].argmax(1)
        assert answers["classes"].tolist() == [[c.encode() for c in spec.class_names]] * len(labels)
        assert figures["accuracy_float"] == np.mean(float_top1 == labels) > 1 / spec.num_classes + 0.2
        assert figures["accuracy_int8"] == np.mean(int8_top1 == labels)
        assert figures["accuracy_drop"] == pytest.approx(figures["accuracy_float"] - figures["accuracy_int8"])
        assert figures["held_out_agreement"] == np.mean(float_top1 == int8_top1)
        assert (figures["split"], figures["samples"]) == ("val", len(labels))
    strict = max(figures["accuracy_drop"] for figures in result["check"].values()) - 1e-6
    refused = tmp_path / "refused.tflite"
    with pytest.raises(litert.LiteRTError, match=rf"on its val split \({len(labels)} images\).* more than {strict}: "
                                                 "not written"):
        litert.export(model, str(refused), [2, 3], "constants", images, int8=True,
                      held_out=_held_out(packed, [2, 3]), max_drop=strict)
    assert not refused.exists()
    litert.export(model, str(refused), [2, 3], "constants", images, int8=True, force=True,
                  held_out=_held_out(packed, [2, 3]), max_drop=strict)
    assert set(litert.interpreter(refused.read_bytes()).get_signature_list()) == {"age", "gender"}


def test_held_out_splits_say_why_a_classifier_has_none(packed):
    """Without workspace.json the split the task was packed with cannot be rebuilt (its seed is unknown):
    each classifier says so, and the feature task is in neither (it is judged by embedding cosine)."""
    model = packed["model"]
    held_out, missing = held_out_splits(locate(packed["workspace"]), model, [1, 2, 3], None)
    assert held_out == {} and set(missing) == {"age", "gender"}
    assert all(reason.startswith("no workspace.json beside") for reason in missing.values())
    check = {"max_abs_diff": 0.01, "agreement": 0.95, "no_held_out": missing["age"]}
    report = format_sizes({"paper_accounting": [], "savedmodel_bytes": 1,
                           "litert": {"layout": "constants", "int8": True, "bytes": 1, "check": {"age": check}}})
    assert f"no labelled data ({missing['age']}): judged by agreement only" in report


TASK_MODULE = '''"""The fixture's classifiers as tasks whose validation split is DATA_DIR/<task>.npz."""
import os

import numpy as np
import tensorflow as tf

from paenet.tasks import TaskData, TaskDefinition, register


def _load(name):
    def load(context):
        data = np.load(os.path.join(context.data_dir, name + ".npz"))
        val = tf.data.Dataset.from_tensor_slices((data["images"], data["labels"])).batch(context.batch_size)
        return TaskData(train=None, validate=None, held_out={"val": val})
    return load


for name, classes in (("age", 3), ("gender", 2)):
    register(TaskDefinition(name, classes, name, _load(name)), replace=True)
'''


def _command(*args, pythonpath=()):
    return subprocess.run([sys.executable, "-m", "paenet.export", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([REPO, *pythonpath]),
                               "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)


def test_command_line(packed, tmp_path):
    workspace = packed["workspace"]
    done = _command(f"--workspace={workspace}", f"--output={tmp_path}", "--litert", "--tasks=age")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LiteRT (shared)" in done.stdout
    assert set(litert.interpreter((tmp_path / LITERT).read_bytes()).get_signature_list()) == {"age"}
    for args, message in ((["--int8"], "--int8 needs --representative"),
                          (["--litert", f"--representative=smile={tmp_path}"], "'smile' is not an exported task")):
        failed = _command(f"--workspace={workspace}", f"--output={tmp_path / 'x'}", *args)
        assert failed.returncode == 1
        assert failed.stderr.strip().splitlines()[-1].startswith("paenet.export: ") and message in failed.stderr


def test_command_line_int8_on_the_workspaces_labelled_validation_split(packed, tmp_path):
    """A workspace whose tasks' data load (a --task_module registers them, --data_dir holds their labelled
    validation images): the report and sizes.json carry each classifier's top-1 before and after; a
    tolerance below the measured drop exits 1 with one line and writes nothing; --force_int8 writes it."""
    from PIL import Image
    workspace, data, pictures = tmp_path / "workspace", tmp_path / "data", tmp_path / "pictures"
    shutil.copytree(os.path.join(packed["workspace"], "packing"), workspace / "packing")
    Workspace(workspace).write_config({"image_size": 16, "batch_size": 16, "seed": 0, "fold": 0})
    (tmp_path / "fixture_tasks.py").write_text(TASK_MODULE)
    data.mkdir(), pictures.mkdir()
    pixels = np.clip(np.round(packed["images"] * 128 + 127.5), 0, 255).astype(np.uint8)   # as image files hold them
    for name, classes in (("age", 3), ("gender", 2)):
        np.savez(data / f"{name}.npz", images=fixed_standardization(pixels).numpy(), labels=packed["labels"] % classes)
    for i, image in enumerate(pixels):     # the calibration sample
        Image.fromarray(image).save(pictures / f"{i}.png")
    args = [f"--workspace={workspace}", "--int8", "--tasks=age,gender", f"--data_dir={data}",
            "--task_module=fixture_tasks", f"--representative={pictures}"]
    done = _command(*args, f"--output={tmp_path / 'out'}", "--int8_max_accuracy_drop=1", pythonpath=[str(tmp_path)])
    assert done.returncode == 0, done.stderr[-2000:]
    checked = json.loads((tmp_path / "out" / "sizes.json").read_text())["litert"]["check"]
    for figures in checked.values():
        assert (f"top-1 on its val split ({len(packed['labels'])} images): float {figures['accuracy_float']:.4f}, "
                f"int8 {figures['accuracy_int8']:.4f}, drop {figures['accuracy_drop']:.4f}") in done.stdout
    strict = max(figures["accuracy_drop"] for figures in checked.values()) - 0.001
    refused = _command(*args, f"--output={tmp_path / 'refused'}", f"--int8_max_accuracy_drop={strict}",
                       pythonpath=[str(tmp_path)])
    assert refused.returncode == 1
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("paenet.export: int8 ") and "not written (pass --force_int8" in line
    assert not (tmp_path / "refused").exists()
    forced = _command(*args, f"--output={tmp_path / 'refused'}", f"--int8_max_accuracy_drop={strict}",
                      "--force_int8", pythonpath=[str(tmp_path)])
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert set(litert.interpreter((tmp_path / "refused" / LITERT_INT8).read_bytes()).get_signature_list()) == {
        "age", "gender"}
