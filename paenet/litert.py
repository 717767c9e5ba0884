"""One LiteRT (``.tflite``) model with a signature per task, for phones and other devices.

Each signature is named after its task and takes ``images`` (float32 [N, H, W, 3], standardised, as the
SavedModel's float signature); it returns what that signature returns (``paenet.serving``: ``embeddings``,
or ``probabilities`` and the class names ``classes``). Two layouts:

* ``shared``: every kernel and its uint8 ownership mask are stored once; each signature selects its task's
  kernel at run time (``paenet.layers.masked.selection_at_run_time``) before convolving, so the file
  stays about the size of one network plus its masks, and each call pays for the selection.
* ``constants``: each signature holds its task's effective kernels as constants, BatchNorm folded in by
  the converter: the fastest, and about one network per task in size.

Neither is bit-identical to the SavedModel: LiteRT's kernels (XNNPACK) sum in another order, and the
constants layout folds BatchNorm into the kernels. ``TOLERANCE`` is the largest difference of any float
output allowed per layout; ``check`` measures it on given images, and ``export`` refuses a model beyond it.

int8: post-training quantisation of weights and activations from a representative sample of each task's
own images (float input and output kept). A classifier given its labelled held-out split is judged on the
labels: ``held_out_accuracy`` measures its top-1 with the float model (the SavedModel's float signature)
and with the int8 model on the same images, and ``export`` refuses a task that loses more than
``INT8_MAX_ACCURACY_DROP`` (absolute; the default of its `max_drop`). Any other task is judged against
the float model on the sample (``check``: a classifier's top-1 agreement, a feature task's mean embedding
cosine), refused below ``INT8_AGREEMENT``. ``force`` writes the model anyway.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import tensorflow as tf

from paenet import serving
from paenet.layers.masked import selection_at_run_time

LAYOUTS = ("shared", "constants")
TOLERANCE = {"shared": 1e-4, "constants": 1e-4}   # max |LiteRT - SavedModel| of a float output
INT8_AGREEMENT = 0.9          # int8: least top-1 agreement (classifier) or mean cosine (feature task)
# int8: the most top-1 accuracy (absolute) a classifier may lose on its labelled held-out split. Post-training
# int8 usually costs CNN classifiers well under one point; two leave room for the few borderline images of a
# small split and still stop a calibration that broke a task.
INT8_MAX_ACCURACY_DROP = 0.02


class LiteRTError(ValueError):
    """A LiteRT model does not answer as the SavedModel within the stated tolerance."""


def _run_time_zero(images):
    """A uint8 0 that the converter cannot fold: the batch size is not known before run time."""
    return tf.cast(tf.shape(images)[0] < 0, tf.uint8)


def _signature(model, task: int, layout: str):
    outputs = serving.task_outputs(model, task)
    if layout == "constants":
        return outputs

    def shared(images):
        with selection_at_run_time(_run_time_zero(images)):
            return outputs(images)
    return shared


def sample_images(folders: dict, image_size: int, count: int = 100, seed: int = 0) -> dict:
    """Task number -> standardised float32 images: up to `count` images drawn (seeded) from each task's
    folder in `folders` (any layout, recursively), each its centred square at `image_size`
    (``real_images.load_image``, as the demo data)."""
    from paenet.data.files import image_files
    from paenet.data.preprocessing import fixed_standardization
    from paenet.data.real_images import load_image
    samples = {}
    for task, folder in folders.items():
        files = image_files(folder)
        if not files:
            raise ValueError(f"{folder}: no images for task {task}'s representative sample")
        chosen = np.random.default_rng(seed).permutation(len(files))[:count]
        samples[task] = fixed_standardization(np.stack([load_image(files[i], image_size) for i in sorted(chosen)])).numpy()
    return samples


def noise_images(model, count: int = 8, seed: int = 0) -> np.ndarray:
    """Standardised uniform-random pixels at the model's size: the float check where no sample is given."""
    from paenet.data.preprocessing import fixed_standardization
    pixels = np.random.default_rng(seed).integers(0, 256, size=(count, *model.image_shape), dtype=np.uint8)
    return fixed_standardization(pixels).numpy()


def convert(model, tasks, layout: str = "shared", representative=None) -> bytes:
    """The ``.tflite`` bytes serving `tasks` (numbers) of `model` in `layout`; int8 when `representative`
    (task number -> float32 standardised images) is given (constants layout only: the shared layout's
    kernels are computed at run time, which int8 weights cannot be)."""
    import keras
    if layout not in LAYOUTS:
        raise ValueError(f"--litert_layout={layout}: choose one of {LAYOUTS}")
    if representative is not None and layout != "constants":
        raise ValueError("int8 quantises the constants layout only: pass --litert_layout=constants")
    images = tf.TensorSpec([None, *model.image_shape], tf.float32, name="images")
    names = {t: model.task_specs[t - 1].name for t in tasks}
    archive = keras.export.ExportArchive()
    for t in tasks:
        archive.add_endpoint(names[t], _signature(model, t, layout), input_signature=[images])
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=list(names.values()))
        if representative is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ((names[t], {"images": representative[t][i:i + 1]})
                                                        for t in tasks for i in range(len(representative[t])))
            converter.inference_input_type = converter.inference_output_type = tf.float32
        return converter.convert()


def interpreter(flat: bytes, threads: int | None = None):
    """An ``ai_edge_litert`` interpreter of the model bytes `flat` on `threads` threads (default: every
    core, as TensorFlow uses them; LiteRT's own default is one)."""
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_content=flat, num_threads=threads or os.cpu_count())


def run(flat_or_interpreter, name: str, images) -> dict:
    """Signature `name` of a LiteRT model (bytes or interpreter) on float32 `images` (any batch size)."""
    it = interpreter(flat_or_interpreter) if isinstance(flat_or_interpreter, bytes) else flat_or_interpreter
    return it.get_signature_runner(name)(images=np.asarray(images, np.float32))


def check(flat: bytes, model, tasks, images: dict) -> dict:
    """Per task name: the LiteRT model against ``serving.task_outputs`` as a ``tf.function`` (the
    SavedModel's float signature) on `images` (task number -> standardised float32 images):
    ``max_abs_diff`` over every float output, ``agreement`` (top-1 agreement of a classifier, mean cosine
    of embeddings) and whether the class names are the same."""
    it = interpreter(flat)
    results = {}
    for t in tasks:
        name = model.task_specs[t - 1].name
        x = np.asarray(images[t], np.float32)
        expected = {k: v.numpy() for k, v in tf.function(serving.task_outputs(model, t))(x).items()}
        got = run(it, name, x)
        floats = [k for k in expected if expected[k].dtype.kind == "f"]
        result = {"max_abs_diff": max(float(np.abs(got[k] - expected[k]).max()) for k in floats)}
        if "probabilities" in expected:
            result["agreement"] = float(np.mean(got["probabilities"].argmax(1) == expected["probabilities"].argmax(1)))
            result["classes_match"] = bool((got["classes"] == expected["classes"]).all())
        else:
            a, b = got["embeddings"], expected["embeddings"]
            cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            result["agreement"] = float(cosine.mean())
        results[name] = result
    return results


def held_out_accuracy(flat_or_interpreter, model, task: int, dataset) -> dict:
    """Task `task` on every (standardised images, labels) batch of `dataset`: top-1 against the labels of
    the float model (``accuracy_float``: the packed model as PAENet evaluates it, with ``paenet.training``'s
    inference function, as the task's validation accuracy) and of the LiteRT model
    (``accuracy_litert``), ``accuracy_drop`` (float - LiteRT), their top-1 ``agreement`` and the number of
    ``samples``."""
    from paenet.training import inference_function
    it = interpreter(flat_or_interpreter) if isinstance(flat_or_interpreter, bytes) else flat_or_interpreter
    name = model.task_specs[task - 1].name
    forward = inference_function(model, task)
    right_float = right = agree = samples = 0
    for x, y in dataset:
        x, y = np.asarray(x, np.float32), np.asarray(y)
        float_top1 = np.asarray(forward(x)).argmax(1)
        litert_top1 = run(it, name, x)["probabilities"].argmax(1)
        right_float += int((float_top1 == y).sum())
        right += int((litert_top1 == y).sum())
        agree += int((float_top1 == litert_top1).sum())
        samples += len(y)
    if not samples:
        raise ValueError(f"task {name!r}: its held-out split has no images")
    return {"accuracy_float": right_float / samples, "accuracy_litert": right / samples,
            "accuracy_drop": (right_float - right) / samples, "agreement": agree / samples, "samples": samples}


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def export(model, path: str, tasks, layout: str = "shared", images: dict | None = None, int8: bool = False,
           force: bool = False, held_out: dict | None = None, max_drop: float = INT8_MAX_ACCURACY_DROP) -> dict:
    """Writes the LiteRT model of `tasks` (numbers) to `path` after checking it on `images` (task number
    -> standardised images; int8 calibrates on them too) against the SavedModel's answers; returns the
    check's figures, per task name. Refuses (LiteRTError, nothing written) a float model beyond
    ``TOLERANCE`` and, unless `force`, an int8 model of which a task in `held_out` (task number -> (split
    name, labelled batches), classifiers) loses more than `max_drop` (absolute) of top-1 accuracy on
    it, or another task agrees with the float model less than ``INT8_AGREEMENT``. A held-out task's figures
    gain ``accuracy_float``, ``accuracy_int8``, ``accuracy_drop``, ``held_out_agreement``, ``split`` and
    ``samples``."""
    from paenet.fileio import write_replacing
    if int8 and not images:
        raise ValueError("int8 quantisation needs a representative sample of each task's images")
    flat = convert(model, tasks, layout, images if int8 else None)
    checked = check(flat, model, tasks, images) if images else {}
    for t, (split, dataset) in ((held_out or {}).items() if int8 else ()):
        measured = held_out_accuracy(flat, model, t, dataset)
        checked[model.task_specs[t - 1].name].update(
            accuracy_float=measured["accuracy_float"], accuracy_int8=measured["accuracy_litert"],
            accuracy_drop=measured["accuracy_drop"], held_out_agreement=measured["agreement"], split=split,
            samples=measured["samples"])
    for name, figures in checked.items():
        if not int8 and figures["max_abs_diff"] > TOLERANCE[layout]:
            raise LiteRTError(f"{layout} layout, {name}: max |LiteRT - SavedModel| {figures['max_abs_diff']:.3g} "
                              f"is above {TOLERANCE[layout]}: not written")
        if not int8 or force:
            continue
        if "accuracy_drop" in figures and figures["accuracy_drop"] > max_drop:
            raise LiteRTError(f"int8 {name}: top-1 {figures['accuracy_int8']:.4f} on its {figures['split']} split "
                              f"({figures['samples']} images) against the float model's "
                              f"{figures['accuracy_float']:.4f}: a loss of {figures['accuracy_drop']:.4f}, more "
                              f"than {max_drop}: not written (pass --force_int8 to write it anyway)")
        if "accuracy_drop" not in figures and figures["agreement"] < INT8_AGREEMENT:
            raise LiteRTError(f"int8 {name}: agreement {figures['agreement']:.4f} with the float model is below "
                              f"{INT8_AGREEMENT}: not written (pass --force_int8 to write it anyway)")
    write_replacing(path, lambda tmp: _write(tmp, flat))
    return {"layout": layout, "int8": int8, "bytes": len(flat), "check": checked}
