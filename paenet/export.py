"""One SavedModel that serves every task of a packed model, and ``python -m paenet.export``.

The SavedModel holds each variable the served tasks read exactly once: the shared masked kernels, their
uint8 masks, and each task's own BatchNorm, biases and head. Each task has a serving signature named by
the task, taking ``images`` (float32 [None, H, W, 3] at the model's ``image_shape``, already
standardised), and ``<task>_uint8`` and ``<task>_bytes`` taking uint8 images of any size and encoded
image files, with the task's preprocessing in the graph (``paenet.serving``): a feature task (no classes,
or FaceNet's face task, whose head only retrains it) returns ``embeddings`` (for FaceNet the
L2-normalised 512-d embedding; otherwise the features the model gives), a classifier returns
``probabilities`` (softmax of its logits) and ``classes`` (its class names). The first task's signature
is also ``serving_default``, which TF Serving needs.

Exactness: loaded with ``tf.saved_model.load``, every signature is bit-identical to the in-memory model
run as a ``tf.function`` (as ``paenet.training`` evaluates it). Eager calls can differ in the last bits
(about 1e-6 here) because Grappler's remapper fuses convolution, BatchNorm and ReLU in graphs only; with
it off (``tf.config.optimizer.set_experimental_options({"remapping": False})``) signatures equal eager
calls bit for bit as well. tests/test_export.py proves both.

Variables are tracked only through the endpoints: ``ExportArchive.track(model)`` would store each of them
twice (as the Keras variable and as the ``tf.Variable`` the functions capture).

The command exports a workspace's finished tasks to ``WORKSPACE/exports/``: ``savedmodel/``, with
``--compressed`` also ``compressed.npz`` (``paenet.compressed``), and ``sizes.json`` (the paper's
accounting and the real bytes, ``paenet.model_size``), which it also prints; with ``--litert`` also
``model.tflite`` (``paenet.litert``: a signature per task, shared or per-task-constants layout), with
``--int8`` ``model_int8.tflite``. The int8 model is judged per task: a classifier on the labelled held-out
(validation) split of its own data, reloaded as the workspace packed it (``held_out_splits``: the
workspace's seed, fold and image size, ``--data_dir``), by its top-1 with the float and the int8 model,
refused when it loses more than ``litert.INT8_MAX_ACCURACY_DROP`` (``--int8_max_accuracy_drop``); a
feature task by its mean embedding cosine with the float model, and a classifier whose labelled split
cannot be reached (no ``workspace.json``, a task not registered, data not found: the report says which)
by its top-1 agreement with it, both refused below ``litert.INT8_AGREEMENT``; ``--force_int8`` writes it
anyway. Classifier signatures return the class names (``classes``) in every format.
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import os

import keras
from absl import app, flags

from paenet import serving
from paenet.checkpoint import load_packing
from paenet.compressed import save_compressed
from paenet.evaluation import model_size
from paenet.fileio import recover_replaced, write_json_atomic, write_replacing
from paenet.records import verify
from paenet.workspace import EXPORTS, locate

SAVEDMODEL = "savedmodel"
COMPRESSED = "compressed.npz"
SIZES = "sizes.json"
LITERT, LITERT_INT8 = "model.tflite", "model_int8.tflite"
# Attributes of the exported object that a signature named after a task would overwrite.
RESERVED_NAMES = ("variables", "trainable_variables", "non_trainable_variables", "serving_default")


def select_tasks(model, tasks=None) -> list[int]:
    """Task numbers from `tasks` (numbers or names; None: every task of `model`), checked."""
    if tasks is None:
        return list(range(1, model.num_tasks + 1))
    numbers = []
    for t in tasks:
        try:
            numbers.append(model.task_number(t) if isinstance(t, str) else model.check_task(t))
        except KeyError as e:
            raise ValueError(e.args[0]) from None
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"tasks named more than once: {list(tasks)}")
    return numbers


def _ordered_archive(model):
    """Keras's export archive, storing the variables in `model`'s own order. Keras lists them as the
    traced functions hold them, in the order of a set of object ids, so each export of the same model
    numbered them differently and its bytes changed (``ExportArchive`` is a factory, hence the wrap of
    the instance's private step rather than a subclass)."""
    archive = keras.export.ExportArchive()
    order = {id(getattr(v, "value", v)): i for i, v in enumerate(model.variables)}
    track = archive._filter_and_track_resources

    def track_in_order():
        track()
        tracked = archive._tf_trackable
        tracked._all_variables = sorted(tracked._all_variables, key=lambda v: order.get(id(v), len(order)))

    archive._filter_and_track_resources = track_in_order
    return archive


def export_savedmodel(model, output_dir: str, tasks=None, records=None, inputs=serving.SIGNATURE_INPUTS) -> str:
    """Writes one SavedModel serving `tasks` of `model` (numbers or names; default all) from `inputs`
    (``paenet.serving``: float, uint8, bytes) to `output_dir`, replacing what was there; returns its path.
    The finished tasks are verified first, against their `records` or else the digests the model holds: a
    model whose finished task changed in memory is refused (IntegrityError) before anything is written."""
    verify(model, records)
    numbers = select_tasks(model, tasks)
    for t in numbers:
        name = model.task_specs[t - 1].name
        if not name.isidentifier() or name.startswith("_") or name in RESERVED_NAMES:
            raise ValueError(f"task name {name!r} cannot name a signature: use a Python identifier that "
                             f"does not start with '_' and is none of {RESERVED_NAMES}")
    endpoints = {}
    for t in numbers:
        for name, endpoint in serving.signatures(model, t, inputs).items():
            if name in endpoints or name in RESERVED_NAMES:
                raise ValueError(f"signature {name!r} of task {model.task_specs[t - 1].name!r} clashes with "
                                 "another task's or a reserved name: rename the task")
            endpoints[name] = endpoint
    archive = _ordered_archive(model)
    for name, (function, input_signature) in endpoints.items():
        archive.add_endpoint(name, function, input_signature=input_signature)
    return write_replacing(output_dir, lambda tmp: archive.write_out(tmp, verbose=False))


def export_workspace(workspace: str, output: str | None = None, compressed: bool = False,
                     tasks=None, litert: str | None = None, int8: bool = False, representative=None,
                     force_int8: bool = False, data_dir: str | None = None,
                     int8_max_accuracy_drop: float | None = None) -> dict:
    """Exports the finished tasks of `workspace` (a workspace or a bare packing folder), or the named
    `tasks` among them, to `output` (default ``WORKSPACE/exports``); returns what ``sizes.json`` holds.

    The compressed file holds the whole packing, every task; the SavedModel serves the chosen tasks, and
    so does ``model.tflite`` with `litert` (a ``paenet.litert`` layout), or ``model_int8.tflite`` with
    `int8`, checked (and int8 calibrated) on `representative` (``task=DIR`` or ``DIR`` for every task),
    and int8 judged on each classifier's held-out split in `data_dir` (``held_out_splits``), refused beyond
    `int8_max_accuracy_drop` (default ``litert.INT8_MAX_ACCURACY_DROP``) unless `force_int8`.
    """
    located = locate(workspace)
    packer = load_packing(located.packing)
    finished = [r.name for r in packer.records]
    if not finished:
        raise ValueError(f"{located.packing} has no finished task to export")
    unfinished = [t for t in tasks or () if t not in finished]
    if unfinished:
        raise ValueError(f"tasks {unfinished} are not finished tasks of {located.packing}; finished: {finished}")
    output = located.output(output, EXPORTS)
    for name in (SAVEDMODEL, COMPRESSED, SIZES):
        recover_replaced(os.path.join(output, name))       # what a killed export left aside
    if litert or int8:     # first: a LiteRT model refused leaves the folder as it was
        lite = _export_litert(located, packer.model, output, tasks or finished, litert or "constants", int8,
                              representative, force_int8, data_dir, int8_max_accuracy_drop)
    path = export_savedmodel(packer.model, os.path.join(output, SAVEDMODEL), tasks or finished, packer.records)
    sizes = {"tasks": list(tasks or finished),
             "paper_accounting": model_size.paper_accounting(packer.model, packer.records, packer.base_parameters),
             "savedmodel_bytes": model_size.bytes_on_disk(path)}
    if compressed:
        path = save_compressed(packer.model, packer.records, os.path.join(output, COMPRESSED))
        sizes["compressed_bytes"] = model_size.bytes_on_disk(path)
    elif os.path.exists(os.path.join(output, COMPRESSED)):
        os.remove(os.path.join(output, COMPRESSED))   # an earlier export's: it may hold other weights
    if litert or int8:
        sizes["litert"] = lite
    write_json_atomic(os.path.join(output, SIZES), sizes)
    return sizes


def representative_folders(model, numbers, entries) -> dict:
    """Task number -> folder from ``--representative`` entries: ``task=DIR``, or ``DIR`` for every task."""
    names = {model.task_specs[t - 1].name: t for t in numbers}
    folders = {}
    for entry in entries or ():
        name, separator, folder = entry.partition("=")
        if not separator:
            name, folder = "", entry
        if name and name not in names:
            raise ValueError(f"--representative={entry}: {name!r} is not an exported task; they are {list(names)}")
        if not os.path.isdir(folder):
            raise ValueError(f"--representative={entry}: {folder}: no such folder")
        folders.update({t: folder for t in ([names[name]] if name else numbers)})
    missing = [name for name, t in names.items() if t not in folders]
    if folders and missing:
        raise ValueError(f"--representative names no folder for tasks {missing}")
    return folders


def held_out_splits(located, model, numbers, data_dir: str | None) -> tuple[dict, dict]:
    """(task number -> ("val", labelled batches), task name -> why not) for each classifier among `numbers`:
    its registered task's validation split, loaded from `data_dir` (None: the task's default) with the
    workspace's image size, batch size, seed and fold, which rebuild the split it was packed with (never
    its training images). Feature tasks are judged by embedding cosine and are in neither."""
    from paenet import tasks as registry
    from paenet.cli import user_errors
    from paenet.workspace import CONFIG, Workspace
    held_out, missing = {}, {}
    for t in numbers:
        name = model.task_specs[t - 1].name
        if serving.serves_embeddings(model, t):
            continue
        if located.file(CONFIG) is None:
            missing[name] = f"no {CONFIG} beside {located.packing} to rebuild its split from"
            continue
        config = Workspace(located.workspace).config()
        context = registry.TaskContext(data_dir, config["image_size"], config["batch_size"], config["seed"],
                                       config["fold"], progress=False)
        try:
            split = registry.get(name).load(context).held_out.get("val")
        except user_errors() as e:
            missing[name] = f"its data did not load: {e.args[0] if isinstance(e, KeyError) else e}"
            continue
        if split is None:
            missing[name] = "its data has no labelled validation split"
        else:
            held_out[t] = ("val", split)
    return held_out, missing


def _export_litert(located, model, output, tasks, layout, int8, representative, force_int8, data_dir,
                   max_drop) -> dict:
    from paenet import litert
    numbers = select_tasks(model, tasks)
    folders = representative_folders(model, numbers, representative)
    if int8 and not folders:
        raise ValueError("--int8 needs --representative: a folder of each task's images (task=DIR or DIR)")
    images = (litert.sample_images(folders, model.image_shape[0]) if folders
              else {t: litert.noise_images(model) for t in numbers})
    held_out, missing = held_out_splits(located, model, numbers, data_dir) if int8 else ({}, {})
    result = litert.export(model, os.path.join(output, LITERT_INT8 if int8 else LITERT), numbers, layout, images,
                           int8, force_int8, held_out,
                           litert.INT8_MAX_ACCURACY_DROP if max_drop is None else max_drop)
    for name, reason in missing.items():
        result["check"][name]["no_held_out"] = reason
    if int8:       # the float model's figures beside the int8 model's
        result["float_check"] = litert.check(litert.convert(model, numbers, "constants"), model, numbers, images)
    return result


def format_sizes(sizes: dict) -> str:
    """The paper's accounting and the real bytes as a plain-text table."""
    mb = model_size.MB
    lines = [f"{'task':>4}  {'name':<20} {'owned weights':>13} {'module MB':>10} {'PAENet MB':>10} "
             f"{'separate MB':>11} {'ratio':>6}"]
    for row in sizes["paper_accounting"]:
        lines.append(f"{row['task']:>4}  {row['name']:<20} {row['owned_weights']:>13} "
                     f"{row['module_bytes'] / mb:>10.3f} {row['cumulative_bytes'] / mb:>10.3f} "
                     f"{row['separate_bytes'] / mb:>11.3f} {row['ratio']:>6.1%}")
    lines.append(f"SavedModel: {sizes['savedmodel_bytes']} bytes")
    if "compressed_bytes" in sizes:
        lines.append(f"compressed: {sizes['compressed_bytes']} bytes")
    if "litert" in sizes:
        lite = sizes["litert"]
        lines.append(f"LiteRT ({lite['layout']}{', int8' if lite['int8'] else ''}): {lite['bytes']} bytes")
        for name, figures in lite["check"].items():
            before = lite.get("float_check", {}).get(name)
            lines.append(f"  {name}: max |LiteRT - SavedModel| {figures['max_abs_diff']:.3g}, agreement "
                         f"{figures['agreement']:.4f}" + (f" (float: {before['agreement']:.4f})" if before else ""))
            if "accuracy_drop" in figures:
                lines.append(f"    top-1 on its {figures['split']} split ({figures['samples']} images): float "
                             f"{figures['accuracy_float']:.4f}, int8 {figures['accuracy_int8']:.4f}, drop "
                             f"{figures['accuracy_drop']:.4f}, agreement {figures['held_out_agreement']:.4f}")
            elif "no_held_out" in figures:
                lines.append(f"    no labelled data ({figures['no_held_out']}): judged by agreement only")
    return "\n".join(lines)


def define_flags():
    from paenet.litert import INT8_AGREEMENT, INT8_MAX_ACCURACY_DROP
    flags.DEFINE_string("workspace", None, "A PAENet workspace folder, or a bare packing folder.")
    flags.DEFINE_string("output", None, "Folder to export to (default: WORKSPACE/exports; required for a "
                                        "bare packing folder). Its savedmodel/ and compressed.npz are replaced.")
    flags.DEFINE_bool("compressed", False, "Also write compressed.npz: masks packed to the bits they need, "
                                           "free (pruned) weights not stored.")
    flags.DEFINE_list("tasks", None, "Names of the finished tasks to serve (default: every finished task).")
    flags.DEFINE_bool("litert", False, "Also write model.tflite: one LiteRT signature per task (paenet.litert).")
    flags.DEFINE_enum("litert_layout", "shared", ["shared", "constants"],
                      "shared: each kernel and mask stored once, selected at run time; constants: each task's "
                      "kernels as constants (faster, larger).")
    flags.DEFINE_bool("int8", False, "Write model_int8.tflite instead: int8 post-training quantisation (constants "
                                     "layout), calibrated on --representative. Refused when a classifier loses more "
                                     f"than {INT8_MAX_ACCURACY_DROP} (absolute) top-1 accuracy on its labelled "
                                     "validation split (--data_dir), or, without one, a task agrees with the float "
                                     f"model less than {INT8_AGREEMENT} (top-1, or mean embedding cosine for a "
                                     "feature task).")
    flags.DEFINE_bool("force_int8", False, "Write the int8 model even when a task falls beyond its tolerance.")
    flags.DEFINE_float("int8_max_accuracy_drop", INT8_MAX_ACCURACY_DROP,
                       "With --int8: the most top-1 accuracy (absolute) a classifier may lose on its validation split.")
    flags.DEFINE_string("data_dir", None, "With --int8: the data folder the tasks were packed from, to judge each "
                                          "classifier on its validation split (default: the task's default).")
    flags.DEFINE_multi_string("task_module", [], "Python module(s) to import first: they register user tasks.")
    flags.DEFINE_list("representative", None, "task=DIR (or DIR for every task): images of each task's own data, "
                                              "to check the LiteRT model on and calibrate int8.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    from paenet.cli import report_errors
    if FLAGS.int8 and FLAGS.litert and FLAGS.litert_layout != "constants":
        raise app.UsageError("--int8 quantises the constants layout: pass --litert_layout=constants or no --litert")
    from paenet.app import import_task_modules
    report_errors("paenet.export", lambda: import_task_modules(FLAGS.task_module))
    sizes = report_errors("paenet.export", lambda: export_workspace(
        FLAGS.workspace, FLAGS.output, FLAGS.compressed, FLAGS.tasks, FLAGS.litert and FLAGS.litert_layout,
        FLAGS.int8, FLAGS.representative, FLAGS.force_int8, FLAGS.data_dir, FLAGS.int8_max_accuracy_drop))
    print(format_sizes(sizes))


if __name__ == "__main__":
    define_flags()
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
