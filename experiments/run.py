"""Runs the paper's experiments with ``python -m paenet.main`` and the flag files beside this script, then
compares with the paper.

    python3 experiments/run.py --experiment=exp1 --root=runs --facenet=PATH/20180402-114759 \
        --face_pairs=PATH/lfw_aligned --data_dir=PATH/tensorflow_datasets [--folds=0,1,2,3,4]

exp1: FaceNet → Adience age → Adience gender, one workspace per Adience test fold (5-fold cross-validation).
exp2: FaceNet → AffectNet expression → FotW gender, one workspace. A killed run resumes when run again:
every task is an ordinary resumable ``paenet.main`` run, and finished tasks are skipped. Prints one JSON
line per workspace and task, then the test accuracies (mean ± std over folds) and the paper's model-size
accounting as one JSON object, and the same as a table beside the paper's figures (PAE, ICMR 2019: the
results table of experiment 1, face / Adience age / Adience gender, and of experiment 2, face / AffectNet /
FotW gender).
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

HERE = Path(__file__).resolve().parent
EXPERIMENTS = {
    "exp1": dict(flagfiles=("exp1_face", "exp1_age", "exp1_gender"), folds=(0, 1, 2, 3, 4),
                 paper={"face": 99.67, "age": 57.30, "gender": 89.08}, paper_mb=(68.9, 84.2, 97.8),
                 source="PAE (ICMR 2019), experiment 1 results table"),
    "exp2": dict(flagfiles=("exp2_face", "exp2_expression", "exp2_fotw_gender"), folds=(0,),
                 paper={"face": 99.67, "expression": 65.29, "fotw_gender": 92.93}, paper_mb=(None, None, 107.3),
                 source="PAE (ICMR 2019), experiment 2 results table"),
}

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("experiment", None, sorted(EXPERIMENTS), "Which experiment.")
    flags.DEFINE_string("root", "runs", "Folder for the experiment's workspaces.")
    flags.DEFINE_string("facenet", None, "FaceNet 20180402-114759 (checkpoint folder, .pb or .tflite).")
    flags.DEFINE_string("face_pairs", None, "Aligned LFW (160 px, margin 32) with pairs.txt.")
    flags.DEFINE_string("data_dir", None, "TFDS data folder holding the prepared data sets.")
    flags.DEFINE_list("folds", None, "Only these test folds (exp1; default all five).")


def _finished(workspace: Path) -> set[str]:
    from paenet.checkpoint import packed_records
    return {r["name"] for r in packed_records(workspace / "packing") or []}


def pack(workspace: Path, flagfile: str, fold: int) -> int:
    """One task into `workspace` (skipped when finished there already); returns the exit status."""
    task = next(l.split("=", 1)[1].strip() for l in (HERE / f"{flagfile}.flags").read_text().splitlines()
                if l.startswith("--task="))
    if task in _finished(workspace):
        return 0
    command = [sys.executable, "-m", "paenet.main", f"--flagfile={HERE / f'{flagfile}.flags'}",
               f"--workspace={workspace}", f"--fold={fold}", f"--facenet={FLAGS.facenet}",
               f"--face_pairs={FLAGS.face_pairs}"] + ([f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else [])
    result = subprocess.run(command, cwd=HERE.parent, stdout=subprocess.PIPE, text=True)
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else f"{task}: exit {result.returncode}",
          flush=True)
    return result.returncode


def summarise(experiment: dict, workspaces: list[Path]) -> dict:
    """Test accuracy per task (mean ± std over workspaces) and the paper's size accounting (MB)."""
    from paenet.evaluation.model_size import MB, paper_accounting
    from paenet.checkpoint import load_packing
    accuracies, sizes = {}, []
    for workspace in workspaces:
        entries = json.loads((workspace / "evaluations.json").read_text())
        last = max(e["after_task"] for e in entries)
        for e in entries:
            if e["after_task"] == last and e["split"] == "test":
                accuracies.setdefault(e["name"], []).append(100 * e["value"])
        packer = load_packing(workspace / "packing")
        sizes.append([r["cumulative_bytes"] / MB for r in paper_accounting(packer.model, packer.records,
                                                                          packer.base_parameters)])
    return {"test_accuracy": {k: (float(np.mean(v)), float(np.std(v)), experiment["paper"].get(k))
                              for k, v in accuracies.items()},
            "cumulative_mb": [float(v) for v in np.mean(sizes, axis=0)], "paper_mb": experiment["paper_mb"]}


def table(experiment: dict, summary: dict) -> str:
    """The summary as text: per task, the test accuracy (mean ± std over folds) beside the paper's, then the
    cumulative model sizes beside the paper's."""
    def figure(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"
    lines = [f"{'task':<12} {'test accuracy %':>18} {'paper %':>8}   ({experiment['source']})"]
    for task, (mean, std, paper) in summary["test_accuracy"].items():
        lines.append(f"{task:<12} {mean:>10.2f} ± {std:<5.2f} {figure(paper):>8}")
    lines.append(f"{'after task':<12} {'model MB':>18} {'paper MB':>8}")
    for n, (ours, paper) in enumerate(zip(summary["cumulative_mb"], summary["paper_mb"]), start=1):
        lines.append(f"{n:<12} {ours:>18.1f} {figure(paper, 1):>8}")
    return "\n".join(lines)


def main(argv):
    del argv
    experiment = EXPERIMENTS[FLAGS.experiment]
    folds = [int(f) for f in FLAGS.folds] if FLAGS.folds else experiment["folds"]
    workspaces = []
    for fold in folds:
        workspace = Path(FLAGS.root) / FLAGS.experiment / f"fold{fold}"
        for flagfile in experiment["flagfiles"]:
            status = pack(workspace, flagfile, fold)
            if status:
                sys.exit(f"{workspace}: {flagfile} ended with exit status {status}")
        workspaces.append(workspace)
    summary = summarise(experiment, workspaces)
    print(json.dumps(summary))
    print(table(experiment, summary))


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["experiment", "facenet", "face_pairs"])
    app.run(main)
