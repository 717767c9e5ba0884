"""``paenet.embed``: image loading, order, flip, the Python function and the command line."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from paenet.embed import embed_images, image_paths, load_image
from paenet.facenet_import import load_facenet

from conftest import REPO, SHARED

FACES = SHARED / "facenet_reference" / "faces"
PB = "20180402-114759.pb"


@pytest.fixture(scope="module")
def model(facenet_dir):
    return load_facenet(facenet_dir).model


def test_folder_is_read_in_sorted_order_and_other_files_skipped(tmp_path):
    paths = image_paths(FACES)
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        "ben_afflek.png", "elton_john.png", "jerry_seinfeld.png", "madonna.png", "mindy_kaling.png"]
    with pytest.raises(ValueError, match="no image files"):
        image_paths(tmp_path)
    with pytest.raises(ValueError, match="no such image"):
        image_paths([str(tmp_path / "absent.png")])


def test_faces_folder_matches_facenets_embeddings(model, facenet_reference):
    assert list(facenet_reference["face_names"]) == [p.rsplit("/", 1)[-1][:-4] for p in image_paths(FACES)]
    embeddings = embed_images(model, FACES)
    assert embeddings.shape == (5, 512) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, facenet_reference["faces_embeddings"], rtol=0, atol=1e-5)


def test_flip_appends_the_flipped_images_embedding(model, facenet_reference):
    both = embed_images(model, FACES, flip=True, batch_size=2)
    assert both.shape == (5, 1024)
    np.testing.assert_allclose(both[:, :512], facenet_reference["faces_embeddings"], rtol=0, atol=1e-5)
    flipped = model(facenet_reference["faces_inputs"][:, :, ::-1, :].copy(), task=1, outputs="embeddings")
    np.testing.assert_allclose(both[:, 512:], flipped.numpy(), rtol=0, atol=1e-6)
    assert np.abs(both[:, 512:] - both[:, :512]).max() > 1e-2


def test_list_of_files_keeps_its_order(model, facenet_reference):
    files = [str(FACES / "madonna.png"), str(FACES / "ben_afflek.png")]
    np.testing.assert_allclose(embed_images(model, files), facenet_reference["faces_embeddings"][[3, 0]],
                               rtol=0, atol=1e-5)


def test_grayscale_rgba_and_other_sizes_are_accepted(model, tmp_path):
    face = Image.open(FACES / "elton_john.png")
    face.convert("L").save(tmp_path / "gray.png")
    rgba = face.convert("RGBA")
    rgba.putalpha(90)
    rgba.save(tmp_path / "rgba.png")
    face.resize((240, 240), Image.BILINEAR).save(tmp_path / "big.png")
    gray = load_image(str(tmp_path / "gray.png"), 160)
    assert gray.shape == (160, 160, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    np.testing.assert_array_equal(load_image(str(tmp_path / "rgba.png"), 160), np.asarray(face))
    files = [str(tmp_path / n) for n in ("gray.png", "rgba.png", "big.png")]
    rows = embed_images(model, files)
    # Alpha dropped: the RGB original in the same place of the same batch gives the same bits (the
    # pixels are equal, as asserted above, so the computation is the same by construction).
    plain = embed_images(model, [files[0], str(FACES / "elton_john.png"), files[2]])
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(rows, plain)
    assert np.dot(rows[0], rows[1]) > 0.5 and np.dot(rows[2], rows[1]) > 0.9


def test_non_square_images_are_centre_cropped_then_resized(tmp_path):
    wide = np.zeros((60, 100, 3), np.uint8)
    wide[:, 20:80] = 200                                              # the centre square
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert np.all(load_image(str(tmp_path / "wide.png"), 60) == 200)
    tall = np.zeros((90, 30, 3), np.uint8)
    tall[30:60] = np.arange(30, dtype=np.uint8)[None, :, None]
    Image.fromarray(tall).save(tmp_path / "tall.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "tall.png"), 30), tall[30:60])
    assert load_image(str(tmp_path / "tall.png"), 160).shape == (160, 160, 3)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(str(tmp_path / "bad.png"), 160)


def test_command_line_with_the_frozen_graph(facenet_dir, facenet_reference, tmp_path):
    out = tmp_path / "faces.npy"
    done = subprocess.run([sys.executable, "-m", "paenet.embed", f"--checkpoint={facenet_dir / PB}",
                           f"--images={FACES}", "--flip", f"--output={out}"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    embeddings = np.load(out)
    assert embeddings.shape == (5, 1024)
    np.testing.assert_allclose(embeddings[:, :512], facenet_reference["faces_embeddings"], rtol=0, atol=1e-5)
    missing = subprocess.run([sys.executable, "-m", "paenet.embed", f"--images={FACES}", f"--output={out}"],
                             cwd=REPO, capture_output=True, text=True)
    assert missing.returncode != 0 and "--checkpoint" in missing.stderr
