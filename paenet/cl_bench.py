"""``python -m paenet.cl_bench``: fine-tune, independent models, PackNet, PAE and CPG side by side on
Fashion-MNIST task sequences (``paenet.cl.sequences``), as ``paenet.cl.benchmark`` describes.

Prints one JSON line per (sequence, method): ``sequence``, ``method``, ``avg_accuracy``, ``bwt``, ``fwt``,
``weights_x``, ``free``, ``size_mb``, ``seconds``, ``device``; writes ``results.json`` (with every
accuracy matrix), ``results.md`` (one Markdown table) and two plots per sequence into ``--output_dir``.
Exit status 1, with one line, when the data is missing or a guarantee fails (a packing method forgot,
or fine-tuning did not forget on ``permuted10``).

    python -m paenet.cl_bench                      # the full CPU configuration (under an hour on 2 cores)
    python -m paenet.cl_bench --quick              # seconds: every method runs, nothing is measured
    python -m paenet.cl_bench --flagfile=experiments/cl_bench_gpu.flags
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import dataclasses
import json
import os
import sys

from absl import app, flags

# Steps per sequence of the full CPU configuration (each sequence's backbone is in paenet.cl.sequences).
FULL = {
    "split5": dict(train_steps=300, steps_per_round=60, prune_steps=30, targets=(0.5, 0.75, 0.875, 0.95)),
    "permuted10": dict(train_steps=500, steps_per_round=100, prune_steps=50, targets=(0.5, 0.75, 0.875, 0.95)),
    "permuted20_small": dict(train_steps=500, steps_per_round=100, prune_steps=50,
                             targets=(0.5, 0.75, 0.875, 0.95)),
    # CPG's CIFAR-100 protocol (experiment1/CPG_cifar100_scratch_mul_1.5.sh): 2,250 training images a task
    # at batch 32 is 70 steps an epoch; 100 epochs of training, pruning rounds of 20 epochs to 0.1 .. 0.9,
    # and growth by 0.5x up to 1.5x. For a GPU: experiments/cl_bench_cifar100_gpu.flags.
    "cifar100_cpg20": dict(train_steps=7000, steps_per_round=1400, prune_steps=700, batch_size=32,
                           targets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), expansion_ratio=1.5,
                           expansion_cap=1.5),
}
FULL["cifar100_resnet18"] = FULL["cifar100_cpg20"]
# The sequences a plain run measures (CIFAR-100 needs the user's download and a GPU).
DEFAULT_SEQUENCES = ("split5", "permuted10", "permuted20_small")
QUICK = dict(train_steps=12, steps_per_round=4, prune_steps=2, prune_frequency=1, targets=(0.5,), batch_size=32,
             eval_batch_size=256)
# The sequence on which fine-tuning must show forgetting (its tasks contradict each other's inputs).
MUST_FORGET = ("permuted10",)

FLAGS = flags.FLAGS


def define_flags():
    from paenet.cl.benchmark import ALL_METHODS
    from paenet.cl.sequences import SEQUENCES
    from paenet.data.idx import FASHION_MNIST_DIR
    flags.DEFINE_list("sequences", list(DEFAULT_SEQUENCES), f"Task sequences: {', '.join(SEQUENCES)}.")
    flags.DEFINE_list("methods", list(ALL_METHODS), f"Methods: {', '.join(ALL_METHODS)}.")
    flags.DEFINE_string("fashion_mnist_dir", FASHION_MNIST_DIR, "Folder of Fashion-MNIST's four IDX files.")
    flags.DEFINE_string("data_dir", None, "TFDS data folder holding paenet_cifar100 (cifar100_cpg20 only).")
    flags.DEFINE_string("output_dir", "cl_bench_results", "Where results.json, results.md and plots go.")
    flags.DEFINE_bool("quick", False, "A few hundred images, tiny networks, a dozen steps: a check, not a "
                                      "measurement.")
    flags.DEFINE_integer("seed", 0, "Seed of the validation split, the permutations and the initialisation.")
    flags.DEFINE_float("steps_scale", 1.0, "Multiplies every step count (a GPU flag file scales up).")
    flags.DEFINE_float("width_scale", 1.0, "Multiplies every backbone width (a GPU flag file scales up).")
    flags.DEFINE_float("margin", 0.01, "Goal = the independent model's validation accuracy minus this.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate for the weights.")
    flags.DEFINE_float("pick_learning_rate", 5e-4, "Adam's learning rate for CPG's picking masks.")
    flags.DEFINE_integer("batch_size", None, "Training batch size (default: the sequence's, 128; CIFAR-100 32).")
    flags.DEFINE_bool("progress", True, "Progress bars.")


def config_for(sequence: str, quick: bool, steps_scale: float = 1.0, **overrides):
    """The ``BenchConfig`` of `sequence`: the full CPU configuration (or the quick one) with the
    `overrides` that are not None, step counts multiplied by `steps_scale`."""
    from paenet.cl.benchmark import BenchConfig
    values = {**(QUICK if quick else FULL[sequence]), **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("train_steps", "steps_per_round", "prune_steps"):
        values[key] = max(1, round(values[key] * steps_scale))
    return BenchConfig(**values)


def _scaled(kwargs: dict, scale: float) -> dict:
    if scale == 1.0:
        return kwargs
    scaled = {"widths": tuple(max(1, round(w * scale)) for w in kwargs.get("widths", ())),
              "dense_units": max(1, round(kwargs.get("dense_units", 0) * scale))}
    return {**kwargs, **{k: v for k, v in scaled.items() if k in kwargs}}


def check_flags():
    from paenet.cl.benchmark import ALL_METHODS
    from paenet.cl.sequences import SEQUENCES
    for name, known, values in (("sequences", SEQUENCES, FLAGS.sequences), ("methods", ALL_METHODS, FLAGS.methods)):
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            raise ValueError(f"--{name}: unknown {unknown or 'none given'}; choose among {', '.join(known)}")
    for name in ("steps_scale", "width_scale", "learning_rate", "pick_learning_rate", "batch_size"):
        if getattr(FLAGS, name) is not None and getattr(FLAGS, name) <= 0:
            raise ValueError(f"--{name} must be positive, got {getattr(FLAGS, name)}")
    if not 0.0 <= FLAGS.margin < 1.0:
        raise ValueError(f"--margin must be in [0, 1), got {FLAGS.margin}")


def markdown(rows: list[dict]) -> str:
    """One table across sequences and methods."""
    head = ("| sequence | method | avg accuracy | BWT | FWT vs independent | weights × | free | size MB | "
            "seconds |\n|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['sequence']} | {r['method']} | {r['avg_accuracy']:.4f} | {r['bwt']:+.4f} | "
        f"{'' if r['fwt'] is None else format(r['fwt'], '+.4f')} | {r['weights_x']:.2f} | {r['free']:.2f} | "
        f"{r['size_mb']:.3f} | {r['seconds']:.0f} |\n" for r in rows)
    return head + body


def run() -> int:
    from paenet import plots
    from paenet.benchmarks.timing import device_name
    from paenet.cl.benchmark import check, run_sequence
    from paenet.cl.sequences import load_sequence
    check_flags()
    device = device_name()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    rows, details = [], []
    for name in FLAGS.sequences:
        sequence = load_sequence(name, FLAGS.fashion_mnist_dir, FLAGS.seed, FLAGS.quick, data_dir=FLAGS.data_dir)
        sequence = dataclasses.replace(sequence, backbone_kwargs=_scaled(sequence.backbone_kwargs, FLAGS.width_scale))
        config = config_for(name, FLAGS.quick, FLAGS.steps_scale, margin=FLAGS.margin, batch_size=FLAGS.batch_size,
                            learning_rate=FLAGS.learning_rate, pick_learning_rate=FLAGS.pick_learning_rate)
        results, independent = {}, None
        for result in run_sequence(sequence, FLAGS.methods, config, FLAGS.progress):
            independent = result if result.method == "independent" else independent
            row = result.row(independent, device)
            print(json.dumps(row), flush=True)
            rows.append(row)
            details.append({**result.to_dict(), "config": dataclasses.asdict(config)})
            results[result.method] = result
            check(result, must_forget=name in MUST_FORGET and not FLAGS.quick)
        names = [t.name for t in sequence.tasks]
        plots.final_accuracy_per_task({m: r.final().tolist() for m, r in results.items()}, names,
                                      os.path.join(FLAGS.output_dir, f"{name}_final_accuracy.png"))
        plots.accuracy_against_size({m: (r.size_mb, float(r.final().mean())) for m, r in results.items()},
                                    os.path.join(FLAGS.output_dir, f"{name}_accuracy_vs_size.png"))
    from paenet.fileio import write_json_atomic
    write_json_atomic(os.path.join(FLAGS.output_dir, "results.json"), details)
    with open(os.path.join(FLAGS.output_dir, "results.md"), "w") as f:
        f.write(markdown(rows))
    return 0


def main(argv):
    from paenet.cl.benchmark import BenchmarkFailure
    from paenet.data.idx import IdxError
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        sys.exit(run())
    except (ValueError, BenchmarkFailure, IdxError, FileNotFoundError) as e:
        print(f"paenet.cl_bench: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
