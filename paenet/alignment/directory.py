"""Aligning a folder of face images FaceNet-style (the library behind ``python -m data_prep.align``).

Every image under the input folder (person sub-folders, or any deeper layout) becomes ``<same relative
path>.png`` under the output folder: the largest, most central MTCNN face, cropped with a margin and resized
(``paenet.alignment.face_crop``). Use 182/44 for training data and 160/32 for LFW.

* Parallel over files (``workers`` processes, each with its own detector), with a progress bar.
* Resumable: an output that exists is not redone, and images listed in ``<output>/no_face.txt`` (the log
  of images where no face was found) are not retried. Outputs are written to a temporary name and renamed,
  so an interrupted run never leaves a half-written image behind.
* Unreadable files are skipped with one warning that counts and names them.
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from paenet.data.files import image_files

NO_FACE_LOG = "no_face.txt"
logger = logging.getLogger(__name__)


@dataclasses.dataclass
class AlignSummary:
    """What one run did; paths are relative to the input folder."""

    aligned: list[str] = dataclasses.field(default_factory=list)
    already_done: int = 0
    no_face: list[str] = dataclasses.field(default_factory=list)
    unreadable: list[str] = dataclasses.field(default_factory=list)

    def __str__(self):
        return (f"aligned {len(self.aligned)}, already done {self.already_done}, no face {len(self.no_face)}, "
                f"unreadable {len(self.unreadable)}")


def output_path(output_dir, relative) -> Path:
    return Path(output_dir) / Path(relative).with_suffix(".png")


def _read_log(path: Path) -> set[str]:
    return set(path.read_text().split("\n")) - {""} if path.exists() else set()


def plan(input_dir, output_dir) -> tuple[list[str], int]:
    """(relative paths still to align, how many are already done or logged as faceless)."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: no such input folder")
    inside = output_dir.resolve()            # an output folder inside the input is not input
    relatives = [p.relative_to(input_dir).as_posix() for p in image_files(input_dir)
                 if inside not in p.resolve().parents]
    targets = {}
    for rel in relatives:
        target = output_path(output_dir, rel)
        if target in targets:
            raise ValueError(f"{input_dir}: {targets[target]} and {rel} would both be aligned to {target}")
        targets[target] = rel
    faceless = _read_log(output_dir / NO_FACE_LOG)
    todo = [rel for rel in relatives if rel not in faceless and not output_path(output_dir, rel).exists()]
    return todo, len(relatives) - len(todo)


_ALIGNER = None


def _start_worker(image_size: int, margin: int, threads: int | None) -> None:
    """Process initialiser: one detector per process (and a share of the cores when several run)."""
    global _ALIGNER
    if _ALIGNER is not None and (_ALIGNER.image_size, _ALIGNER.margin) == (image_size, margin):
        return
    if threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from paenet.alignment.face_crop import FaceAligner
    _ALIGNER = FaceAligner(image_size, margin)


def _align_one(job: tuple[str, str, str]) -> tuple[str, str]:
    """Aligns input `source` to `target`; returns (relative path, "aligned" | "no_face" | "unreadable")."""
    from paenet.alignment.face_crop import UnreadableImage, read_rgb
    relative, source, target = job
    try:
        image = read_rgb(source)
    except UnreadableImage as e:
        logger.debug("%s", e)
        return relative, "unreadable"
    result = _ALIGNER.align(image)
    if result is None:
        return relative, "no_face"
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    Image.fromarray(result[0]).save(partial, format="PNG")
    os.replace(partial, target)
    return relative, "aligned"


def align_directory(input_dir, output_dir, image_size: int = 160, margin: int = 32, workers: int = 1,
                    progress: bool = True) -> AlignSummary:
    """Aligns every image of `input_dir` not yet done into `output_dir` (see the module docstring)."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    todo, done = plan(input_dir, output_dir)
    summary = AlignSummary(already_done=done)
    if not todo:
        return summary
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(rel, str(input_dir / rel), str(output_path(output_dir, rel))) for rel in todo]
    workers = max(1, min(int(workers), len(jobs)))
    with open(output_dir / NO_FACE_LOG, "a") as no_face_log, \
            tqdm(total=len(jobs), desc="align", unit="img", disable=not progress) as bar:
        for relative, status in _run(jobs, image_size, margin, workers):
            if status == "no_face":
                no_face_log.write(relative + "\n")
                no_face_log.flush()
            getattr(summary, status).append(relative)
            bar.update()
    if summary.unreadable:
        logger.warning("%d unreadable file(s) skipped in %s: %s", len(summary.unreadable), input_dir,
                       ", ".join(sorted(summary.unreadable)))
    if summary.no_face:
        logger.warning("no face found in %d image(s); listed in %s", len(summary.no_face),
                       output_dir / NO_FACE_LOG)
    return summary


def _run(jobs, image_size: int, margin: int, workers: int):
    """Yields each job's result: in this process for one worker, else from a pool of `workers` processes."""
    if workers == 1:
        _start_worker(image_size, margin, None)
        yield from map(_align_one, jobs)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # TensorFlow must not be forked
    with context.Pool(workers, _start_worker, (image_size, margin, threads)) as pool:
        yield from pool.imap_unordered(_align_one, jobs, chunksize=4)
