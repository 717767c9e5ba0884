"""Face alignment: face choice and crop geometry (no detector), then MTCNN on the real photos and the CLI."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import archives
from paenet.alignment.directory import NO_FACE_LOG, align_directory, plan
from paenet.alignment.face_crop import FaceAligner, UnreadableImage, crop_face, read_rgb, select_face

REPO = Path(__file__).resolve().parents[1]


def test_select_face_prefers_large_then_central():
    shape = (300, 300)
    jerry = [73, 24, 108, 75]        # the real detections of celebs/Jerry_Seinfeld_0016 (x1, y1, x2, y2)
    woman = [191, 69, 218, 108]
    hand = [146, 178, 161, 196]      # a 15x18 false detection right at the centre
    assert select_face([jerry, woman, hand], shape) == 1
    assert select_face([jerry, hand], shape) == 0
    assert select_face([[0, 0, 100, 100], [100, 100, 200, 200]], shape) == 1   # equal sizes: the central one
    with pytest.raises(ValueError):
        select_face(np.zeros((0, 4)), shape)


def test_crop_adds_half_the_margin_per_side_and_clips():
    image = np.zeros((100, 120, 3), np.uint8)
    image[30:50, 40:60] = 255                                   # the "face": a 20x20 white square
    crop = crop_face(image, (40, 30, 60, 50), image_size=40, margin=20)
    assert crop.shape == (40, 40, 3)                            # 40x40 window, white in its middle 20x20
    assert crop[15:25, 15:25].min() == 255 and crop[:5].max() == 0 and crop[:, -5:].max() == 0
    edge = crop_face(image, (0, 0, 20, 20), image_size=30, margin=20)   # clipped at the border: 30x30 window
    assert edge.shape == (30, 30, 3)


@pytest.mark.parametrize("mode, fmt, name", [("L", "JPEG", "gray.jpg"), ("RGBA", "PNG", "rgba.png"),
                                             ("P", "PNG", "palette.png"), ("RGB", "PNG", "png_named.jpg")])
def test_read_rgb_converts_modes(tmp_path, mode, fmt, name):
    path = archives.write_image(tmp_path / name, 1, mode=mode, fmt=fmt, size=(31, 17))
    image = read_rgb(path)
    assert image.shape == (17, 31, 3) and image.dtype == np.uint8


def test_read_rgb_names_an_unreadable_file(tmp_path):
    for path in (archives.write_truncated_jpeg(tmp_path / "cut.jpg", 1),
                 archives.write_not_an_image(tmp_path / "x.png")):
        with pytest.raises(UnreadableImage, match=path.name):
            read_rgb(path)


def test_a_face_in_every_photo_that_has_one(data_dir, aligned_raw):
    with open(data_dir / "aligned_faces" / "MANIFEST.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["path"].startswith("raw/")]
    assert len(rows) == 11
    for row in rows:
        assert int(row["faces_by_eye"].split("+")[0]) >= 1
        out = aligned_raw / (row["path"][len("raw/"):].rsplit(".", 1)[0] + ".png")
        assert out.is_file(), f"no face found in {row['path']}"
        assert np.asarray(Image.open(out)).shape == (160, 160, 3)
    assert (aligned_raw / NO_FACE_LOG).read_text() == ""


def test_group_photo_gives_the_largest_most_central_face(data_dir, aligned_raw):
    image = read_rgb(data_dir / "aligned_faces" / "raw" / "insightface_t1.jpg")
    aligner = FaceAligner(160, 32)
    boxes = aligner.detect(image)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    faces = boxes[area >= 0.25 * area.max()]
    assert len(faces) == 6                                   # the six people MANIFEST.csv counts
    crop, chosen = aligner.align(image)
    offsets = np.hypot((faces[:, 0] + faces[:, 2]) / 2 - image.shape[1] / 2,
                       (faces[:, 1] + faces[:, 3]) / 2 - image.shape[0] / 2)
    chosen_area = (chosen[2] - chosen[0]) * (chosen[3] - chosen[1])
    chosen_offset = np.hypot((chosen[0] + chosen[2]) / 2 - image.shape[1] / 2,
                             (chosen[1] + chosen[3]) / 2 - image.shape[0] / 2)
    assert chosen_offset == offsets.min()                     # the most central of the six ...
    assert chosen_area >= 0.85 * area.max()                   # ... and about as large as the largest
    np.testing.assert_array_equal(np.asarray(Image.open(aligned_raw / "insightface_t1.png")), crop)


def test_cli_parallel_then_resume(tmp_path, data_dir):
    src = tmp_path / "in"
    (src / "A").mkdir(parents=True)
    (src / "B").mkdir()
    raw = data_dir / "aligned_faces" / "raw"
    (src / "A" / "gray.png").write_bytes((raw / "emopy_ckplus_sample_happy_image.png").read_bytes())
    (src / "A" / "rgba.png").write_bytes((raw / "face_recognition_32bit.png").read_bytes())
    (src / "B" / "astronaut.png").write_bytes((raw / "skimage_astronaut.png").read_bytes())
    Image.fromarray(np.full((120, 90, 3), 127, np.uint8)).save(src / "B" / "blank.jpg")       # no face
    archives.write_truncated_jpeg(src / "B" / "broken.jpg", 3)
    (src / "B" / "notes.txt").write_text("not an image file: ignored")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "data_prep.align", f"--input={src}", f"--output={out}",
                           "--image_size=182", "--margin=44", "--workers=2"], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "aligned 3, already done 0, no face 1, unreadable 1" in done.stdout
    assert "1 unreadable file(s) skipped" in done.stderr and "B/broken.jpg" in done.stderr
    assert (out / NO_FACE_LOG).read_text() == "B/blank.jpg\n"
    aligned = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert aligned == ["A/gray.png", "A/rgba.png", "B/astronaut.png"]
    assert all(Image.open(out / p).size == (182, 182) for p in aligned)

    (out / "A" / "rgba.png").unlink()                         # resume: only the missing output is redone
    summary = align_directory(src, out, image_size=182, margin=44, progress=False)
    assert (summary.aligned, summary.already_done, summary.no_face, summary.unreadable) == (
        ["A/rgba.png"], 3, [], ["B/broken.jpg"])
    inner = src / "aligned"                                   # an output inside the input is not read back
    inner.mkdir()
    (inner / "x.png").write_bytes((out / "A" / "gray.png").read_bytes())
    assert plan(src, inner) == (["A/gray.png", "A/rgba.png", "B/astronaut.png", "B/blank.jpg", "B/broken.jpg"], 0)
