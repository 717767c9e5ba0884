"""What each task serves, from what a client has: float images, uint8 images of any size, encoded bytes.

Every task of an export is served by up to three signatures (``SIGNATURE_INPUTS``):

* ``<task>``: ``images``, float32 [N, H, W, 3] at the model's size, already standardised (as before);
* ``<task>_uint8``: ``images``, uint8 [N, h, w, 3] of any size: the task's preprocessing runs in the graph;
* ``<task>_bytes``: ``image_bytes``, string [N], each a JPEG, PNG, GIF or BMP file's bytes (TF Serving's
  REST API base64-decodes inputs named ``*_bytes`` sent as ``{"b64": ...}``); a file that does not decode
  fails the request with TensorFlow's "Unknown image file format" / "Invalid JPEG data" error.

The preprocessing (``prepare``) is the demo data's and FaceNet's: the largest centred square, of which a
task keeps its ``TaskSpec.input_crop`` share (1: all of it; the paper's tasks 160/182, their evaluation's
centre crop of faces aligned at 182 px), resized with antialiasing (area) to the model's size and rounded
back to whole pixel values (as ``paenet.data.real_images.load_image``), then FaceNet's fixed
standardisation. An image already at the model's size with ``input_crop`` 1 is not resized, so its
``_uint8`` and ``_bytes`` answers are bit-identical to the float signature on its standardised pixels.

Outputs: a classifier returns ``probabilities`` [N, classes] and ``classes`` [N, classes] (the class names,
TF Serving's classification convention); a feature task returns ``embeddings``.
"""
from __future__ import annotations

import tensorflow as tf

from paenet.data.preprocessing import fixed_standardization

FLOAT, UINT8, BYTES = "float", "uint8", "bytes"
SIGNATURE_INPUTS = (FLOAT, UINT8, BYTES)
SUFFIXES = {FLOAT: "", UINT8: "_uint8", BYTES: "_bytes"}


def serves_embeddings(model, task: int) -> bool:
    """Whether task `task` serves features: a task without classes, or one whose head only trains it
    (FaceNet's face task, ``InceptionResnetV1.serves_embeddings``)."""
    serves = getattr(model, "serves_embeddings", None)
    return serves(task) if serves is not None else not model.task_specs[task - 1].num_classes


def task_outputs(model, task: int):
    """Task `task` on standardised float images -> {"embeddings"} or {"probabilities", "classes"}."""
    spec = model.task_specs[task - 1]
    if serves_embeddings(model, task):
        head = {"outputs": "embeddings"} if spec.num_classes else {}
        return lambda images: {"embeddings": tf.cast(model(images, task=task, training=False, **head), tf.float32)}
    names = tf.constant([spec.label(c) for c in range(spec.num_classes)])

    def classify(images):
        probabilities = tf.nn.softmax(tf.cast(model(images, task=task, training=False), tf.float32))
        return {"probabilities": probabilities,
                "classes": tf.tile(names[tf.newaxis], [tf.shape(probabilities)[0], 1])}
    return classify


def prepare(images, image_size: int, crop: float = 1.0):
    """uint8 [N, h, w, 3] of any size -> standardised float32 [N, image_size, image_size, 3] (see the module
    docstring)."""
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    side = tf.minimum(height, width)
    if crop != 1.0:
        side = tf.cast(tf.round(tf.cast(side, tf.float32) * crop), tf.int32)
    with tf.control_dependencies([tf.debugging.assert_positive(side, message="an image has no pixels")]):
        top, left = (height - side) // 2, (width - side) // 2
    square = images[:, top:top + side, left:left + side]
    pixels = tf.cond(tf.equal(side, image_size), lambda: tf.cast(square, tf.float32),
                     lambda: tf.clip_by_value(tf.round(tf.image.resize(square, (image_size, image_size),
                                                                       method="area", antialias=True)), 0, 255))
    return fixed_standardization(tf.ensure_shape(pixels, [None, image_size, image_size, 3]))


def decode(encoded, image_size: int, crop: float = 1.0):
    """string [N] of encoded images -> standardised float32 [N, image_size, image_size, 3]."""
    def one(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        return prepare(image[tf.newaxis], image_size, crop)[0]
    return tf.map_fn(one, encoded, fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def signatures(model, task: int, kinds=SIGNATURE_INPUTS) -> dict:
    """{signature name: (function, [input TensorSpec])} of task `task` for the input `kinds`. Every one
    calls the same traced float function, so that an export traces (and stores) the model once per task."""
    spec = model.task_specs[task - 1]
    images = tf.TensorSpec([None, *model.image_shape], tf.float32, name="images")
    outputs, size = tf.function(task_outputs(model, task), input_signature=[images]), int(model.image_shape[0])
    crop = float(spec.input_crop)
    made = {}
    for kind in kinds:
        if kind == FLOAT:
            made[spec.name] = (outputs, [images])
        elif kind == UINT8:
            made[spec.name + SUFFIXES[UINT8]] = (lambda images: outputs(prepare(images, size, crop)),
                                                [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        elif kind == BYTES:
            made[spec.name + SUFFIXES[BYTES]] = (lambda image_bytes: outputs(decode(image_bytes, size, crop)),
                                                [tf.TensorSpec([None], tf.string, name="image_bytes")])
        else:
            raise ValueError(f"unknown serving input {kind!r}: choose among {SIGNATURE_INPUTS}")
    return made
