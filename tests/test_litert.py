"""The LiteRT export: one .tflite with a signature per task, read by the ai-edge-litert interpreter, each
float output within its layout's tolerance of the SavedModel; the shared layout stores every kernel once;
int8 reports its agreement and is refused beyond it unless forced."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from packed_workspace import make_workspace
from paenet import litert
from paenet.export import LITERT, SAVEDMODEL, export_savedmodel

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


def _command(*args):
    return subprocess.run([sys.executable, "-m", "paenet.export", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)


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
