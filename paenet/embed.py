"""``python -m paenet.embed``: FaceNet embeddings of aligned face images, written as one .npy array.

    python -m paenet.embed --checkpoint=PATH --images=DIR_OR_FILES [--flip] --output=FILE.npy

``--checkpoint``: a FaceNet TF1 checkpoint (its prefix, or the directory holding it), a frozen GraphDef
(``.pb``) or a TFLite model (``.tflite``); see ``paenet.facenet_import``. ``--images``: one directory, whose
image files are read in sorted file-name order (other files are skipped), or a comma-separated list of
image files, read in the order given. Row i of the output is the embedding of image i: float32, 512 wide
for FaceNet, 1024 with ``--flip``, which appends the embedding of the horizontally flipped image (FaceNet's
LFW protocol).

Each image becomes 8-bit RGB (grayscale is replicated, an alpha channel dropped, a palette expanded); a
non-square image is centre-cropped to a square of its shorter side; the square is resized (bilinear) to the
model's input size, which leaves FaceNet's 160 px aligned crops untouched; then FaceNet's fixed
standardisation, (x − 127.5) / 128. The same is available as ``embed_images``.
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import os

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from PIL import Image

from paenet.data.preprocessing import fixed_standardization
from paenet.evaluation.lfw import embedding_function

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("checkpoint", None, "FaceNet checkpoint prefix or directory, .pb or .tflite file.")
    flags.DEFINE_list("images", None, "A directory of images (sorted by file name) or a comma-separated file list.")
    flags.DEFINE_string("output", None, "The .npy file to write: one row per image.")
    flags.DEFINE_bool("flip", False, "Append the embedding of each horizontally flipped image.")
    flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")


def image_paths(images) -> list[str]:
    """The image files that `images` names: a directory (its image files in sorted name order), or a
    file or list of files (in the order given)."""
    images = [os.fspath(images)] if isinstance(images, (str, os.PathLike)) else [os.fspath(p) for p in images]
    if len(images) == 1 and os.path.isdir(images[0]):
        directory = images[0]
        found = sorted(n for n in os.listdir(directory) if n.lower().endswith(IMAGE_SUFFIXES)
                       and os.path.isfile(os.path.join(directory, n)))
        if not found:
            raise ValueError(f"{directory}: no image files in it (looked for {', '.join(IMAGE_SUFFIXES)})")
        return [os.path.join(directory, n) for n in found]
    missing = [p for p in images if not os.path.isfile(p)]
    if missing or not images:
        raise ValueError(f"no such image file(s): {missing}" if missing else "no images given")
    return images


def load_image(path: str, size: int) -> np.ndarray:
    """`path` as a ``[size, size, 3]`` uint8 RGB array: centre-cropped to a square, resized (bilinear)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")       # L → replicated, RGBA/LA → alpha dropped, P → expanded
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: not a readable image: {e}") from None
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, np.uint8)


def embed_images(model, images, flip: bool = False, batch_size: int = 32, task: int = 1) -> np.ndarray:
    """Embeddings (float32, one row per image) of `images` (see ``image_paths``) by task `task` of
    `model`, an ``InceptionResnetV1`` or a path that ``paenet.facenet_import.load_facenet`` reads.
    With `flip`, each row continues with the embedding of the horizontally flipped image."""
    paths = image_paths(images)
    if not isinstance(model, keras.Model):
        from paenet.facenet_import import load_facenet
        model = load_facenet(model).model
    size = model.input_size
    forward = embedding_function(model, task)
    rows = []
    for start in range(0, len(paths), batch_size):
        batch = fixed_standardization(np.stack([load_image(p, size) for p in paths[start:start + batch_size]]))
        parts = [forward(batch)]
        if flip:
            parts.append(forward(tf.reverse(batch, axis=[2])))
        rows.append(np.concatenate(parts, axis=1))
    return np.concatenate(rows).astype(np.float32)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from paenet.cli import report_errors

    def work():
        embeddings = embed_images(FLAGS.checkpoint, FLAGS.images, FLAGS.flip, FLAGS.batch_size)
        np.save(FLAGS.output, embeddings)
        return embeddings
    embeddings = report_errors("paenet.embed", work)
    logging.info("wrote %s embeddings to %s", embeddings.shape, FLAGS.output)


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["checkpoint", "images", "output"])
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
