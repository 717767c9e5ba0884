"""``python -m paenet.predict``: every face of real photos, each task's named answer, one JSON line per face;
a photo without a face, an unreadable file and a huge photo are one line each and the run goes on."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from packed_workspace import make_workspace
from paenet.export import export_workspace
from paenet.predict import ALIGN_MARGIN, ALIGN_SIZE, Predictor, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAW = os.path.join(REPO, "..", "shared", "data", "aligned_faces", "raw")
GROUP, ASTRONAUT = os.path.join(RAW, "insightface_t1.jpg"), os.path.join(RAW, "skimage_astronaut.png")
pytestmark = pytest.mark.skipif(not os.path.isfile(GROUP), reason="../shared/data is not fetched")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    packed = make_workspace(str(root))
    export_workspace(packed["workspace"], tasks=["face", "age"])
    photos = root / "photos"
    (photos / "more").mkdir(parents=True)
    shutil.copy(GROUP, photos / "group.jpg")
    shutil.copy(ASTRONAUT, photos / "more" / "astronaut.png")
    Image.new("RGB", (120, 90), (128, 128, 128)).save(photos / "gray.png")     # no face
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return {"root": root, "workspace": packed["workspace"], "photos": photos, "packer": packed["packer"]}


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_face_with_named_answers_and_one_per_failed_photo(workspace):
    out, annotated = workspace["root"] / "lines.jsonl", workspace["root"] / "annotated"
    counts = run([str(workspace["photos"])], workspace=workspace["workspace"], annotate_dir=str(annotated),
                 output=str(out), max_pixels=1_000_000, progress=False)
    lines = _lines(out)
    by_file = {}
    for line in lines:
        by_file.setdefault(os.path.basename(line["file"]), []).append(line)
    assert by_file["broken.jpg"] == [{"file": str(workspace["photos"] / "broken.jpg"),
                                      "error": by_file["broken.jpg"][0]["error"]}]
    assert "not a readable image" in by_file["broken.jpg"][0]["error"]
    assert [l["error"] for l in by_file["gray.png"]] == ["no face found"]
    assert "more than --max_pixels=1000000" in by_file["group.jpg"][0]["error"]   # 1280x886 is over it
    (astronaut,) = by_file["astronaut.png"]
    x1, y1, x2, y2 = astronaut["box"]
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 200 and astronaut["score"] > 0.9   # her face, top centre
    assert set(astronaut["tasks"]) == {"age", "gender"}     # the feature task only with --embeddings
    assert astronaut["tasks"]["age"]["label"] in ("young", "adult", "old")
    assert astronaut["tasks"]["gender"]["label"] in ("male", "female")
    assert counts == {"photos": 4, "faces": 1, "no_face": 1, "unreadable": 2}
    assert sorted(p.relative_to(annotated).as_posix() for p in annotated.rglob("*")
                  if p.is_file()) == ["gray.jpg", "more/astronaut.jpg"]


def test_every_face_of_a_group_photo_and_the_answers_are_the_models(workspace):
    from paenet.alignment.face_crop import FaceAligner, crop_face, read_rgb
    from paenet import serving
    out = workspace["root"] / "group.jsonl"
    run([GROUP], workspace=workspace["workspace"], embeddings=True, output=str(out), progress=False)
    lines = _lines(out)
    assert len(lines) >= 6 and [l["face"] for l in lines] == list(range(len(lines)))   # six people
    image = read_rgb(GROUP)
    faces = np.stack([crop_face(image, l["box"], ALIGN_SIZE, ALIGN_MARGIN) for l in lines])
    model = workspace["packer"].model
    probabilities = serving.task_outputs(model, 2)(serving.prepare(faces, 16))["probabilities"].numpy()
    for line, p in zip(lines, probabilities):
        assert line["tasks"]["age"]["label"] == model.task_specs[1].class_names[int(np.argmax(p))]
        assert line["tasks"]["age"]["probability"] == pytest.approx(float(p.max()), abs=1e-5)
        assert len(line["tasks"]["face"]["embedding"]) == model.dense_units
    assert len(FaceAligner().detect(image)) == len(lines)          # align's detector, every face


def test_an_export_answers_as_the_workspace(workspace):
    exported = Predictor.from_export(os.path.join(workspace["workspace"], "exports"))
    assert set(exported.tasks) == {"face", "age"}
    direct = Predictor.from_workspace(workspace["workspace"], ["face", "age"])
    faces = np.random.default_rng(0).integers(0, 256, size=(3, 160, 160, 3), dtype=np.uint8)
    a, b = exported.answers(faces, embeddings=True), direct.answers(faces, embeddings=True)
    assert [r["age"]["label"] for r in a] == [r["age"]["label"] for r in b]
    np.testing.assert_allclose([r["face"]["embedding"] for r in a], [r["face"]["embedding"] for r in b], atol=1e-5)


def _command(*args):
    return subprocess.run([sys.executable, "-m", "paenet.predict", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)


def test_command_line(workspace, tmp_path):
    done = _command(f"--export={workspace['workspace']}/exports", f"--images={ASTRONAUT}", "--noprogress")
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [json.loads(l) for l in done.stdout.splitlines()]
    assert set(line["tasks"]) == {"age"}
    for args, message in (([f"--images={tmp_path / 'missing.jpg'}"], "no such file or folder"),
                          (["--tasks=smile", f"--images={ASTRONAUT}"], "'smile'"),
                          ([], "--images is required")):
        failed = _command(f"--workspace={workspace['workspace']}", *args)
        assert failed.returncode == 1
        (error,) = failed.stderr.strip().splitlines()[-1:]
        assert error.startswith("paenet.predict: ") and message in error, failed.stderr[-2000:]


def test_the_report_shows_the_workspaces_predictions(workspace, tmp_path):
    from paenet.predict import LINES, PREDICTIONS
    from paenet.report import write_report
    folder = os.path.join(workspace["workspace"], PREDICTIONS)
    os.makedirs(folder, exist_ok=True)
    run([ASTRONAUT], workspace=workspace["workspace"], annotate_dir=folder, output=os.path.join(folder, LINES),
        progress=False)
    paths = write_report(workspace["workspace"], str(tmp_path / "report"))
    markdown = open(paths["markdown"]).read()
    assert "## Prediction on a photo" in markdown and "![faces and answers on skimage_astronaut.jpg]" in markdown
    with open(tmp_path / "report" / "prediction_skimage_astronaut.jpg", "rb") as f:
        assert f.read(3) == b"\xff\xd8\xff"                         # the annotated JPEG, beside the report
    (line,) = _lines(Path(folder) / LINES)
    assert f"age: {line['tasks']['age']['label']}" in markdown
