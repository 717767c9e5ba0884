"""The serving signatures take what clients send: uint8 images of any size and encoded image files, with the
task's preprocessing in the graph, through ``tf.saved_model.load`` and ``saved_model_cli run``."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from packed_workspace import SIZE, make_workspace
from paenet.data.preprocessing import fixed_standardization
from paenet.data.real_images import load_image
from paenet.export import export_savedmodel


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    packed = make_workspace(str(root))
    path = export_savedmodel(packed["packer"].model, str(root / "savedmodel"), tasks=["face", "age"])
    return {"path": path, "loaded": tf.saved_model.load(path), "root": root}


def _photo(height, width, seed):
    """A smooth random RGB picture (so JPEG keeps it recognisable), uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def _encoded(image, format):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=format)
    return buffer.getvalue()


def _bits(x):
    return np.asarray(x).tobytes()


def test_uint8_at_the_model_size_is_bit_identical_to_the_float_signature(served):
    signatures = served["loaded"].signatures
    images = np.stack([_photo(SIZE, SIZE, s) for s in range(4)])
    for task, output in (("face", "embeddings"), ("age", "probabilities")):
        reference = signatures[task](images=fixed_standardization(images))[output]
        assert _bits(signatures[f"{task}_uint8"](images=tf.constant(images))[output]) == _bits(reference)
        encoded = tf.constant([_encoded(i, "PNG") for i in images])
        assert _bits(signatures[f"{task}_bytes"](image_bytes=encoded)[output]) == _bits(reference)


def test_any_size_and_format_is_preprocessed_as_the_demo_data(served, tmp_path):
    """A 40x24 PNG and a 30x50 JPEG, each given as pixels and as bytes, answer what the float signature
    answers on ``real_images.load_image`` of the file (centre square, area resize, whole pixel values)."""
    signatures = served["loaded"].signatures
    for n, (shape, format) in enumerate((((24, 40), "PNG"), ((50, 30), "JPEG"))):
        path = tmp_path / f"photo{n}.{format.lower()}"
        path.write_bytes(_encoded(_photo(*shape, seed=n), format))
        expected = signatures["age"](images=fixed_standardization(load_image(path, SIZE)[None]))["probabilities"]
        pixels = tf.io.decode_image(path.read_bytes(), channels=3)[None]
        assert _bits(signatures["age_uint8"](images=pixels)["probabilities"]) == _bits(expected)
        by_bytes = signatures["age_bytes"](image_bytes=tf.constant([path.read_bytes()]))
        assert _bits(by_bytes["probabilities"]) == _bits(expected)
        assert by_bytes["classes"].numpy().tolist() == [[b"young", b"adult", b"old"]]


def test_a_batch_of_files_of_different_sizes(served):
    files = [_encoded(_photo(24, 40, 0), "PNG"), _encoded(_photo(50, 30, 1), "JPEG"), _encoded(_photo(16, 16, 2), "PNG")]
    outputs = served["loaded"].signatures["age_bytes"](image_bytes=tf.constant(files))
    assert outputs["probabilities"].shape == (3, 3)
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-6)


def test_a_bad_image_is_a_clear_error(served):
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        served["loaded"].signatures["age_bytes"](image_bytes=tf.constant([b"not an image"]))


def _cli(*args):
    return subprocess.run(["saved_model_cli", "run", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_saved_model_cli_runs_the_bytes_signature(served):
    root, path = served["root"], served["path"]
    good, bad = root / "good.npy", root / "bad.npy"
    np.save(good, np.array([_encoded(_photo(24, 40, 0), "JPEG")], dtype=object), allow_pickle=True)
    np.save(bad, np.array([b"GIF89a broken"], dtype=object), allow_pickle=True)
    done = _cli("--dir", path, "--tag_set", "serve", "--signature_def", "age_bytes", "--inputs", f"image_bytes={good}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "probabilities" in done.stdout and "young" in done.stdout
    failed = _cli("--dir", path, "--tag_set", "serve", "--signature_def", "age_bytes", "--inputs", f"image_bytes={bad}")
    assert failed.returncode != 0
    assert "Unknown image file format" in failed.stderr or "Invalid GIF data" in failed.stderr, failed.stderr[-2000:]
