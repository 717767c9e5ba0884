"""``python -m paenet.report``: what a workspace's network holds and how well each task does, as one page.

Writes ``report.md`` and ``report.html`` (the same content) and their PNG plots to ``WORKSPACE/report/``
(or ``--output``): the finished tasks (owned weights, pruned share, metrics, digest), the accuracy matrix
(task i evaluated after packing task j, from ``evaluations.json``), per-layer ownership stacked by task
(from the masks), target sparsity and validation accuracy per pruning round (from the records), the
expansions, the model size against separate models (the paper's accounting, plus the real bytes of the
exports when there are any), and the LFW ROC where ``lfw_roc.json`` exists. Loading the packing verifies
every finished task's digest first.
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import os

import numpy as np
from absl import app, flags

from paenet import plots
from paenet.checkpoint import load_packing
from paenet.evaluation import model_size
from paenet.document import Heading, Image, Paragraph, Table, to_html, to_markdown
from paenet.export import COMPRESSED, SAVEDMODEL
from paenet.records import read_json
from paenet.workspace import EVALUATIONS, EXPORTS, LFW_ROC, REPORT, WorkspaceError, locate, read_evaluations

EVALUATION_KEYS = ("after_task", "task", "name", "split", "metric", "value")
NO_TEST = "no test split"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _mb(n: int) -> str:
    return f"{n / model_size.MB:.3f}"


def read_accuracy(path: str, names: list) -> tuple[dict, int]:
    """Accuracy matrices by split from an ``evaluations.json``: ``m[j - 1, i - 1]`` is task i after packing
    task j (NaN where not measured; a later entry replaces an earlier one). Also returns how many entries
    were left out because they name a task this packing does not have at that number."""
    entries = read_evaluations(path)
    matrices, stale = {}, 0
    for n, entry in enumerate(entries):
        missing = [k for k in EVALUATION_KEYS if k not in entry]
        if missing:
            raise WorkspaceError(f"{path}: entry {n} lacks {missing}")
        if entry["metric"] != "accuracy":
            continue
        i, j = int(entry["task"]), int(entry["after_task"])
        if not 1 <= i <= j <= len(names) or names[i - 1] != entry["name"]:
            stale += 1
            continue
        matrix = matrices.setdefault(entry["split"], np.full((len(names), len(names)), np.nan))
        matrix[j - 1, i - 1] = float(entry["value"])
    return matrices, stale


def largest_change(matrix: np.ndarray) -> float:
    """The largest |accuracy after packing task j - accuracy right after packing task i| over j > i
    (0.0 for a network that forgets nothing; NaN when nothing can be compared)."""
    changes = [abs(matrix[j, i] - matrix[i, i]) for i in range(len(matrix)) for j in range(i + 1, len(matrix))
               if not np.isnan(matrix[j, i]) and not np.isnan(matrix[i, i])]
    return max(changes) if changes else float("nan")


def split_data(entries: list, names: list) -> dict:
    """(task number, split) -> what the split's data is, in words, from the latest ``evaluations.json``
    entry that says so."""
    data = {}
    for entry in entries:
        i = int(entry.get("task", 0))
        if entry.get("data") and 1 <= i <= len(names) and names[i - 1] == entry.get("name"):
            data[(i, entry["split"])] = entry["data"]
    return data


def _data_section(names, entries) -> list:
    if not isinstance(entries, list):
        return []             # none yet, or a damaged file that the accuracy section reports
    data = split_data(entries, names)
    tested = {int(e["task"]) for e in entries if e.get("split") == "test"}
    rows = [[task, name, data.get((task, "val"), "not recorded"),
             data.get((task, "test"), "not recorded") if task in tested else NO_TEST]
            for task, name in enumerate(names, start=1)]
    return [Heading("Data"),
            Paragraph("What each task's accuracies below were computed on: its validation split selects the "
                      "pruning round it keeps, its test split is evaluated once per packing step."),
            Table(["task", "name", "validation", "test"], rows)]


def _classes(spec) -> str:
    """A task's classes by name (its count where it has no names)."""
    return f"{spec.num_classes}: {', '.join(spec.class_names)}" if spec.class_names else str(spec.num_classes)


def _prediction_section(located, output) -> list:
    """The annotated photos and answers of ``WORKSPACE/predictions/`` (``paenet.predict``; the demo writes
    them), copied beside the report; nothing when there are none."""
    import json
    import shutil

    from paenet.predict import LINES, PREDICTIONS
    path = located.file(os.path.join(PREDICTIONS, LINES))
    if path is None:
        return []
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    blocks = [Heading("Prediction on a photo"),
              Paragraph(f"`python -m paenet.predict`: every face found, each task's answer ({len(lines)} lines).")]
    folder = os.path.dirname(path)
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".jpg")):
        shutil.copyfile(os.path.join(folder, name), os.path.join(output, f"prediction_{name}"))
        blocks.append(Image(f"prediction_{name}", f"faces and answers on {name}"))
    rows = [[os.path.basename(l["file"]), l.get("face", ""), l.get("box", ""), l.get("score", ""),
             l.get("error") or ", ".join(f"{t}: {a['label']} ({a['probability']:.2f})"
                                         for t, a in l["tasks"].items() if "label" in a)] for l in lines]
    return blocks + [Table(["photo", "face", "box", "score", "answers"], rows)]


def _tasks_section(model, records) -> list:
    by_task = {r.task: r for r in records}
    rows = []
    for task, spec in enumerate(model.task_specs, start=1):
        r = by_task.get(task)
        if r is None:
            rows.append([task, spec.name, _classes(spec), "", "", "active, not finished", ""])
            continue
        metrics = ", ".join(f"{k}={_number(v)}" for k, v in sorted(r.metrics.items()))
        rows.append([task, r.name, _classes(spec), sum(r.owned.values()), f"{model_size.pruned_fraction(r):.1%}",
                     metrics, r.digest[:12]])
    return [Heading("Tasks"),
            Table(["task", "name", "classes", "owned weights", "pruned", "metrics", "digest"], rows)]


def _accuracy_section(located, names, output) -> list:
    blocks = [Heading("Accuracy matrix")]
    path = located.file(EVALUATIONS)
    if path is None:
        return blocks + [Paragraph(f"No `{EVALUATIONS}` in the workspace: nothing evaluated yet.")]
    matrices, stale = read_accuracy(path, names)
    if not matrices:
        return blocks + [Paragraph(f"`{EVALUATIONS}` holds no accuracy of this packing's tasks.")]
    plots.accuracy_matrix(matrices, names, os.path.join(output, "accuracy_matrix.png"))
    blocks += [Image("accuracy_matrix.png", "accuracy of task i after packing task j"),
               Paragraph("Each task on its own data (the Data section): `val` its validation split, `test` its "
                         "test split. Cells above the diagonal are tasks not packed yet.")]
    for split, matrix in matrices.items():
        rows = [[f"after {j + 1}: {names[j]}"] + [_cell(matrix, j, i) for i in range(len(names))]
                for j in range(len(names))]
        blocks += [Paragraph(f"Split `{split}`: largest change of a task's accuracy after it was packed: "
                             f"{largest_change(matrix):.4g}."),
                   Table([split, *names], rows)]
    if stale:
        blocks.append(Paragraph(f"{stale} entries of `{EVALUATIONS}` name tasks this packing does not have "
                                "at those numbers (rolled back or renumbered) and were left out."))
    return blocks


def _cell(matrix, j: int, i: int) -> str:
    """Task i's accuracy after packing task j, or why there is none."""
    if not np.isnan(matrix[j, i]):
        return f"{matrix[j, i]:.4f}"
    if i > j:
        return ""
    return NO_TEST if np.isnan(matrix[:, i]).all() else "not measured"


def stage(layer_key: str) -> str:
    """The block or stage a masked layer belongs to: the first part of its key (``Repeat_1.block17_3.``
    ... -> ``Repeat_1``)."""
    return layer_key.split(".")[0]


def _ownership_section(model, names, output) -> list:
    import csv
    counts = model_size.ownership(model)
    stages: dict = {}
    for key, c in counts.items():
        stages.setdefault(stage(key), []).append(c)
    by_stage = {s: np.sum(c, axis=0) for s, c in stages.items()}
    labels = [f"{s} ({len(stages[s])} layer{'s' * (len(stages[s]) > 1)}, {int(by_stage[s].sum()):,} weights)"
              for s in stages]
    plots.ownership(dict(zip(labels, by_stage.values())), names, os.path.join(output, "ownership.png"))
    with open(os.path.join(output, "ownership.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "stage", "weights", "free", *names])
        writer.writerows([key, stage(key), int(c.sum()), *(int(n) for n in c)] for key, c in counts.items())
    shares = np.array([c / c.sum() for c in counts.values()])
    overall = np.sum(list(counts.values()), axis=0) / sum(int(c.sum()) for c in counts.values())
    spread = float(np.abs(shares - overall).max())
    return [Heading("Ownership by stage"),
            Image("ownership.png", "share of each stage's kernel weights per task"),
            Paragraph(f"Whole network: " + ", ".join(f"{label} {share:.1%}" for label, share
                                                     in zip(["free", *names], overall))
                      + f". The {len(counts)} masked layers in {len(stages)} stages; every layer's shares are "
                      f"within {spread:.2%} of these (each task prunes every layer to the same target). "
                      f"Per layer: `ownership.csv`.")]


def _pruning_section(records, output) -> list:
    rounds = {r.name: r.pruning for r in records if r.pruning}
    blocks = [Heading("Pruning rounds")]
    if not rounds:
        return blocks + [Paragraph("No task was pruned in rounds.")]
    marks = {r.name: (r.metrics.get("goal"), r.metrics.get("chosen_sparsity")) for r in records if r.pruning}
    plots.pruning_rounds(rounds, marks, os.path.join(output, "pruning.png"))
    rows = [[name, n, _number(e["sparsity"]), _number(e.get("val_accuracy", "")), _loss(e)]
            for name, entries in rounds.items() for n, e in enumerate(entries, start=1)]
    return blocks + [Image("pruning.png", "validation accuracy per pruning round, the goal and the chosen round"),
                     Paragraph("Every round that ran is listed, with its validation accuracy on the task's "
                               "validation split (the Data section); a task keeps the most pruned round that met "
                               "its goal (its `chosen_sparsity` metric). A round's loss is its training steps' "
                               "mean; a task pruned without retraining has none."),
                     Table(["task", "round", "target sparsity", "val accuracy", "training loss"], rows)]


def _loss(entry: dict) -> str:
    loss = entry.get("loss")
    return _number(loss) if isinstance(loss, (int, float)) and np.isfinite(loss) else "no training steps"


def _expansions_section(records) -> list:
    rows = [[r.name, e["round"], e.get("policy", ""), e.get("ratio", ""), e["parameters"],
             ", ".join(f"{k}={w}" for k, w in e["widths"].items())]
            for r in records for e in r.expansions]
    if not rows:
        return [Heading("Expansions"), Paragraph("No expansion: every task fit in the free weights.")]
    return [Heading("Expansions"),
            Table(["task", "round", "policy", "ratio", "masked weights", "widths"], rows)]


def _size_section(located, packer, output) -> list:
    accounting = model_size.paper_accounting(packer.model, packer.records, packer.base_parameters)
    plots.model_size(accounting, model_size.MB, os.path.join(output, "model_size.png"))
    rows = [[r["task"], r["name"], r["owned_weights"], _mb(r["module_bytes"]), _mb(r["cumulative_bytes"]),
             _mb(r["separate_bytes"]), f"{r['ratio']:.1%}"] for r in accounting]
    exports = []
    for name in (SAVEDMODEL, COMPRESSED):
        path = located.file(os.path.join(EXPORTS, name))
        if path:
            exports.append(f"`{EXPORTS}/{name}`: {model_size.bytes_on_disk(path)} bytes")
    real = ("Real bytes on disk: " + "; ".join(exports) + "." if exports else
            "No export in the workspace yet: `python -m paenet.export --workspace=WORKSPACE --compressed` "
            "writes one.")
    return [Heading("Model size"),
            Paragraph("Paper accounting: a task's module is the weights it owns x 4 B + 1 B per mask entry it "
                      "owns + its own BatchNorm, biases and head; PAENet after task k holds modules 1..k, "
                      "against k separate copies of the network before any expansion. MB = 2^20 bytes."),
            Image("model_size.png", "PAENet against separate models"),
            Table(["task", "name", "owned weights", "module MB", "PAENet MB (1..k)", "separate MB", "ratio"], rows),
            Paragraph(real)]


def _roc_section(located, output) -> list:
    path = located.file(LFW_ROC)
    if path is None:
        return []
    roc = read_json(path)
    missing = [k for k in ("fpr", "tpr", "auc") if k not in roc]
    if missing:
        raise WorkspaceError(f"{path}: lacks {missing}")
    task, data = roc.get("task"), roc.get("data")
    named = f"{task} on {_short(data)}" if task and data else task or "the verification task"
    plots.roc(roc["fpr"], roc["tpr"], float(roc["auc"]), os.path.join(output, "verification_roc.png"), named)
    on = (f"its test split, {data}" if data else
          "its test split (which data was not recorded: the workspace predates that; the Data section may say)")
    return [Heading(f"Verification ROC of {named}"), Image("verification_roc.png", f"ROC of {named}"),
            Paragraph(f"The ROC of {f'`{task}`' if task else 'the verification task'} on {on}. "
                      f"AUC = {float(roc['auc']):.4f}.")]


def _short(data: str) -> str:
    """A split's data named by its folder: ``folds 6-10 of /x/ckplus/pairs.txt`` -> ``ckplus/pairs.txt``."""
    words = data.split()
    path = next((w for w in reversed(words) if os.sep in w), None)
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path)) if path else data


def write_report(workspace: str, output: str | None = None) -> dict:
    """Writes the report of `workspace` (a workspace or a bare packing folder) to `output` (default
    ``WORKSPACE/report``); returns the paths of ``report.md`` and ``report.html``."""
    located = locate(workspace)
    packer = load_packing(located.packing)
    output = located.output(output, REPORT)
    os.makedirs(output, exist_ok=True)
    model, records = packer.model, packer.records
    names = [s.name for s in model.task_specs]
    masked = sum(int(np.prod(l.kernel.shape)) for l in model.masked_layers())
    blocks = [Heading("PAENet report", 1),
              Paragraph(f"Packing `{os.path.abspath(located.packing)}`: {type(model).__name__} `{model.name}`, "
                        f"input {'x'.join(map(str, model.image_shape))}, sharing `{model.sharing}`, "
                        f"{masked} masked weights in {len(model.masked_layers())} layers, "
                        f"{len(records)} finished tasks: {', '.join(r.name for r in records)}.")]
    evaluations = located.file(EVALUATIONS)
    entries = read_json(evaluations) if evaluations else None
    for section in (_tasks_section(model, records), _data_section(names, entries),
                    _accuracy_section(located, names, output),
                    _ownership_section(model, names, output), _pruning_section(records, output),
                    _expansions_section(records), _size_section(located, packer, output),
                    _roc_section(located, output), _prediction_section(located, output)):
        blocks += section
    paths = {"markdown": os.path.join(output, "report.md"), "html": os.path.join(output, "report.html")}
    with open(paths["markdown"], "w") as f:
        f.write(to_markdown(blocks))
    with open(paths["html"], "w") as f:
        f.write(to_html(blocks, "PAENet report"))
    return paths


def define_flags():
    flags.DEFINE_string("workspace", None, "A PAENet workspace folder, or a bare packing folder.")
    flags.DEFINE_string("output", None, "Folder for report.md, report.html and the plots (default: "
                                        "WORKSPACE/report; required for a bare packing folder).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from paenet.cli import report_errors
    paths = report_errors("paenet.report", lambda: write_report(flags.FLAGS.workspace, flags.FLAGS.output))
    print(f"wrote {paths['markdown']} and {paths['html']}")


if __name__ == "__main__":
    define_flags()
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
