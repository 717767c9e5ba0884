"""``python -m paenet.predict``: every face of raw photos, every task's answer, one JSON line per face.

    python -m paenet.predict --workspace=WS --images=photo.jpg,DIR [--tasks=a,b] [--annotate=OUT]
    python -m paenet.predict --export=WS/exports --images=...

The faces are found as ``python -m data_prep.align`` finds them (``paenet.alignment.face_crop.FaceAligner``:
MTCNN with FaceNet's detector settings), but every face is kept, not only the most central one; each is
cropped as align's default (160 px, margin 32) and given to each task's ``_uint8`` serving function
(``paenet.serving``: the task's own crop, resize and standardisation), from the workspace's packing or
from an export's SavedModel. Each line holds the file, the face's number, its box (x1, y1, x2, y2 in
pixels), the detector's score, and per classifier task its best class's name and probability;
``--embeddings`` adds each feature task's embedding (FaceNet's face task). A photo without a face, an
unreadable file and a photo above ``--max_pixels`` are one line each with an ``error``, and the run goes on.
``--annotate=DIR`` writes a copy of each photo with its boxes and answers drawn to DIR (JPEG).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

ALIGN_SIZE, ALIGN_MARGIN = 160, 32      # data_prep.align's defaults, as the demo's and LFW's faces
MAX_PIXELS = 50_000_000
PREDICTIONS, LINES = "predictions", "predictions.jsonl"   # WORKSPACE/predictions/: the report shows them


class Predictor:
    """Runs chosen tasks on aligned uint8 faces: ``tasks`` maps each name to (function of uint8 [N, h, w, 3]
    -> serving outputs, whether it is a feature task)."""

    def __init__(self, tasks: dict):
        self.tasks = tasks

    @classmethod
    def from_workspace(cls, path: str, names=None) -> "Predictor":
        """The finished tasks (or `names`) of a workspace or packing folder, digests verified on loading."""
        import tensorflow as tf

        from paenet import serving
        from paenet.checkpoint import load_packing
        from paenet.export import select_tasks
        from paenet.workspace import locate
        packer = load_packing(locate(path).packing)
        finished = [r.name for r in packer.records]
        unfinished = [n for n in names or () if n not in finished]
        if unfinished:
            raise ValueError(f"--tasks: {unfinished} are not finished tasks of {path}; finished: {finished}")
        tasks = {}
        for t in select_tasks(packer.model, names or finished):
            name = packer.model.task_specs[t - 1].name
            function, signature = serving.signatures(packer.model, t, [serving.UINT8])[name + "_uint8"]
            tasks[name] = (tf.function(function, input_signature=signature),
                           serving.serves_embeddings(packer.model, t))
        return cls(tasks)

    @classmethod
    def from_export(cls, path: str, names=None) -> "Predictor":
        """The tasks (or `names`) of an export: its ``savedmodel/`` or the SavedModel folder itself."""
        import tensorflow as tf

        from paenet.export import SAVEDMODEL
        folder = os.path.join(path, SAVEDMODEL) if os.path.isdir(os.path.join(path, SAVEDMODEL)) else path
        if not os.path.isfile(os.path.join(folder, "saved_model.pb")):
            raise ValueError(f"--export={path}: no SavedModel there (nor in {SAVEDMODEL}/)")
        loaded = tf.saved_model.load(folder)
        served = sorted(n[:-len("_uint8")] for n in loaded.signatures if n.endswith("_uint8"))
        if not served:
            raise ValueError(f"--export={path}: its SavedModel has no _uint8 signatures: export it again")
        missing = [n for n in names or () if n not in served]
        if missing:
            raise ValueError(f"--tasks: {missing} are not served by {folder}; it serves {served}")
        tasks = {}
        for name in names or served:
            signature = loaded.signatures[name + "_uint8"]
            tasks[name] = ((lambda s: lambda images: s(images=images))(signature),
                           "embeddings" in signature.structured_outputs)
        return cls(tasks)

    def answers(self, faces: np.ndarray, embeddings: bool = False) -> list[dict]:
        """Per face of uint8 `faces` [N, h, w, 3]: {task: {"label", "probability"} or {"embedding"}}."""
        results = [{} for _ in faces]
        for name, (function, features) in self.tasks.items():
            if features and not embeddings:
                continue
            outputs = function(faces)
            if features:
                for result, vector in zip(results, outputs["embeddings"].numpy()):
                    result[name] = {"embedding": [round(float(v), 6) for v in vector]}
                continue
            probabilities, classes = outputs["probabilities"].numpy(), outputs["classes"].numpy()
            for result, p, names in zip(results, probabilities, classes):
                best = int(np.argmax(p))
                result[name] = {"label": names[best].decode(), "probability": round(float(p[best]), 6)}
        return results


def photo_files(paths) -> list[tuple[Path, Path]]:
    """(file, its path relative to the folder named, or its name) of each file or every image of each folder
    in `paths`; a path that is not there is an error."""
    from paenet.data.files import image_files
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [(p, p.relative_to(path)) for p in image_files(path)]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise ValueError(f"--images: {path}: no such file or folder")
    return found


def read_photo(path: Path, max_pixels: int) -> np.ndarray:
    """uint8 RGB of `path` (``paenet.alignment.face_crop.read_rgb``); a photo above `max_pixels` is refused from its
    header, before it is decoded."""
    from PIL import Image

    from paenet.alignment.face_crop import UnreadableImage, read_rgb
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableImage(f"not a readable image ({e})") from e
    if width * height > max_pixels:
        raise UnreadableImage(f"{width}x{height} pixels, more than --max_pixels={max_pixels}")
    return read_rgb(path)


def predict_photo(aligner, predictor: Predictor, path: Path, embeddings: bool = False,
                  max_pixels: int = MAX_PIXELS) -> tuple[list[dict], np.ndarray | None]:
    """(one line per face of the photo at `path`, or one line with an ``error``; the photo, or None when
    it cannot be read)."""
    from paenet.alignment.face_crop import UnreadableImage, crop_face
    try:
        image = read_photo(path, max_pixels)
    except UnreadableImage as e:
        return [{"file": str(path), "error": str(e).removeprefix(f"{path}: ")}], None
    boxes, scores = aligner.detect_scored(image)
    if not len(boxes):
        return [{"file": str(path), "error": "no face found"}], image
    faces = np.stack([crop_face(image, box, ALIGN_SIZE, ALIGN_MARGIN) for box in boxes])
    return [{"file": str(path), "face": k, "box": [round(float(v), 1) for v in box],
             "score": round(float(score), 6), "tasks": answers}
            for k, (box, score, answers) in enumerate(zip(boxes, scores, predictor.answers(faces, embeddings)))], image


def annotate(image: np.ndarray, lines: list[dict], target: Path) -> None:
    """Writes `image` with each face's box and answers drawn on it to `target` (JPEG)."""
    from PIL import Image, ImageDraw, ImageFont
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    scale = max(1, round(max(picture.size) / 500))
    font = ImageFont.load_default(size=12 * scale)
    for line in lines:
        if "box" not in line:
            continue
        x1, y1, x2, y2 = line["box"]
        draw.rectangle((x1, y1, x2, y2), outline=(255, 40, 40), width=2 * scale)
        text = "\n".join(f"{task}: {a['label']} {a['probability']:.2f}" for task, a in line["tasks"].items()
                         if "label" in a)
        if text:
            left, _, right, _ = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=scale)
            where = (max(0, min(x1, picture.width - (right - left))), y2 + 2 * scale)
            draw.multiline_text(where, text, fill=(255, 255, 0), font=font, stroke_width=scale, stroke_fill=(0, 0, 0))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    picture.save(partial, format="JPEG", quality=90)
    os.replace(partial, target)


def run(images, workspace=None, export=None, tasks=None, annotate_dir=None, embeddings=False, output=None,
        max_pixels: int = MAX_PIXELS, progress: bool = True) -> dict:
    """Predicts on every photo of `images` (see the module docstring); writes the lines to `output` (a
    file; default stdout); returns counts of faces and of photos without an answer."""
    from tqdm.auto import tqdm

    from paenet.alignment.face_crop import FaceAligner
    if bool(workspace) == bool(export):
        raise ValueError("give exactly one of --workspace and --export")
    if not images:
        raise ValueError("--images is required: photos or folders of photos")
    if max_pixels < 1:
        raise ValueError(f"--max_pixels must be at least 1, not {max_pixels}")
    if annotate_dir and os.path.isfile(annotate_dir):
        raise ValueError(f"--annotate={annotate_dir} is a file, not a folder")
    files = photo_files(images)
    predictor = Predictor.from_workspace(workspace, tasks) if workspace else Predictor.from_export(export, tasks)
    aligner = FaceAligner(ALIGN_SIZE, ALIGN_MARGIN)
    counts = {"photos": len(files), "faces": 0, "no_face": 0, "unreadable": 0}
    out = open(output, "w") if output else sys.stdout
    try:
        for path, relative in tqdm(files, desc="predict", unit="photo", disable=not progress):
            lines, image = predict_photo(aligner, predictor, path, embeddings, max_pixels)
            for line in lines:
                out.write(json.dumps(line) + "\n")
            out.flush()
            if image is None:
                counts["unreadable"] += 1
            elif "error" in lines[0]:
                counts["no_face"] += 1
            else:
                counts["faces"] += len(lines)
            if annotate_dir and image is not None:
                annotate(image, lines, Path(annotate_dir) / relative.with_suffix(".jpg"))
    finally:
        if output:
            out.close()
    return counts


def define_flags():
    flags.DEFINE_string("workspace", None, "A PAENet workspace (or packing folder): its finished tasks.")
    flags.DEFINE_string("export", None, "Instead of --workspace: an export folder (WORKSPACE/exports) or "
                                        "its SavedModel.")
    flags.DEFINE_list("images", None, "Photos, and folders whose images (recursively) are predicted.")
    flags.DEFINE_list("tasks", None, "Tasks to run (default: every task).")
    flags.DEFINE_string("annotate", None, "Folder to write copies of the photos with boxes and answers to.")
    flags.DEFINE_bool("embeddings", False, "Also write each feature task's embedding (FaceNet's face task).")
    flags.DEFINE_string("output", None, "File to write the JSON lines to (default: stdout).")
    flags.DEFINE_integer("max_pixels", MAX_PIXELS, "A photo with more pixels is one error line, not decoded.")
    flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.")


def main(argv):
    from absl import logging

    from paenet.cli import report_errors
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    counts = report_errors("paenet.predict", lambda: run(f.images, f.workspace, f.export, f.tasks, f.annotate,
                                                         f.embeddings, f.output, f.max_pixels, f.progress))
    print(f"paenet.predict: {counts['faces']} faces in {counts['photos']} photos; no face in {counts['no_face']}, "
          f"unreadable {counts['unreadable']}", file=sys.stderr)


if __name__ == "__main__":
    define_flags()
    app.run(main)
