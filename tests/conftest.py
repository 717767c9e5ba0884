"""Shared fixtures: determinism, the real face data of ../shared/data, the FaceNet reference files."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Every test that compares bits relies on this; it costs nothing measurable on CPU (DESIGN §9).
tf.config.experimental.enable_op_determinism()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``, laid out by its fetch script (a no-op when already up to date)."""
    out = SHARED / "data"
    subprocess.run([str(out / "fetch")], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def facenet_dir() -> Path:
    """The directory of the FaceNet 20180402-114759 files that ``../shared/facenet_reference/make`` writes."""
    make = SHARED / "facenet_reference" / "make"
    out = subprocess.run([str(make)], check=True, capture_output=True, text=True,
                         env={**os.environ, "PAENET_PYTHON": sys.executable}).stdout
    return Path(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def facenet_reference() -> dict:
    import numpy as np
    return dict(np.load(SHARED / "facenet_reference" / "reference_io.npz"))


@pytest.fixture
def without_op_determinism():
    """XLA has no deterministic MaxPool gradient: tests of jit-compiled training steps that do not
    compare bits across runs turn determinism off for their duration."""
    from tensorflow.python.framework import config
    config.disable_op_determinism()
    yield
    tf.config.experimental.enable_op_determinism()


def _align(src: Path, dst: Path) -> Path:
    from paenet.alignment.directory import align_directory
    align_directory(src, dst, image_size=160, margin=32, workers=1, progress=False)
    return dst


@pytest.fixture(scope="session")
def aligned_celebs(data_dir, tmp_path_factory) -> Path:
    """``celebs/`` aligned for LFW's protocol (160 px, margin 32), with its pairs.txt beside the images."""
    out = _align(data_dir / "celebs", tmp_path_factory.mktemp("aligned") / "celebs")
    (out / "pairs.txt").write_bytes((data_dir / "celebs" / "pairs.txt").read_bytes())
    return out


@pytest.fixture(scope="session")
def aligned_raw(data_dir, tmp_path_factory) -> Path:
    """``aligned_faces/raw`` aligned at 160 px, margin 32."""
    return _align(data_dir / "aligned_faces" / "raw", tmp_path_factory.mktemp("aligned") / "raw")
