"""``python -m paenet.cl_bench``: fine-tune, independent models (unpruned and pruned), PackNet, PAE, CPG and
Piggyback side by side on Fashion-MNIST task sequences (``paenet.cl.sequences``), over several seeds, as
``paenet.cl.benchmark`` describes.

Prints one JSON line per (sequence, seed, method) as it finishes (``MethodResult.row``: ``avg_accuracy``,
``bwt``, ``forgetting``, ``fwt``, ``vs_independent``, sizes, ``steps``, ``seconds`` ...), then one per
(sequence, method) with ``seeds`` and every metric's mean, std and 95% t-interval over them
(``paenet.cl.summary``); writes ``results.json`` (where it came from, every seed's accuracy matrices and
per-task records, the rows, the summary), ``results.md`` (the table and the orderings the intervals
support) and two plots per sequence into ``--output_dir``. ``--from_results=FILE,... --readme=README.md``
rewrites the README's generated table from results files. Exit status 1, with one line, when the data is
missing or a guarantee fails (a packing method forgot, fine-tuning did not forget on ``permuted10``, a
packing method spent more steps on a task than the baselines trained it).

    python -m paenet.cl_bench                      # the full CPU configuration: 3 seeds
    python -m paenet.cl_bench --quick              # seconds, seed 0: every method runs, nothing is measured
    python -m paenet.cl_bench --flagfile=experiments/cl_bench/fashion_mnist_gpu.flags
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time

from absl import app, flags

# Steps per sequence of the full CPU configuration (each sequence's backbone is in paenet.cl.sequences): sized
# so that the default run (3 seeds x 3 sequences x every method, --jobs=2) finishes within 45 minutes on a
# quiet 2-core machine, which these networks' per-step costs allow at about a fifth of an epoch a phase.
# Longer runs: --steps_scale (experiments/cl_bench/fashion_mnist_gpu.flags).
FULL = {
    "split5": dict(train_steps=60, steps_per_round=12, prune_steps=6, prune_frequency=2, eval_every=20,
                   targets=(0.5, 0.75, 0.875, 0.95)),
    "permuted10": dict(train_steps=100, steps_per_round=20, prune_steps=10, prune_frequency=2, eval_every=20,
                       targets=(0.5, 0.75, 0.875, 0.95)),
    # The narrow MLP after one 100-step phase varies more between seeds (pooled std of independent's validation
    # accuracy 0.017 on seeds 0-2, against permuted10's 0.007): its goals sit 0.04 under, the others' 0.02.
    "permuted20_small": dict(train_steps=100, steps_per_round=20, prune_steps=10, prune_frequency=2, eval_every=20,
                             targets=(0.5, 0.75, 0.875, 0.95), margin=0.04),
    # CPG's CIFAR-100 protocol (ivclab/CPG experiment1/CPG_cifar100_scratch_mul_1.5.sh): 2,500 training images
    # a task at batch 32 is 78 steps an epoch (CPG trains on all 2,500; here 10% of them are held out for
    # validation, so the steps, not the images, are CPG's); 100 epochs of training; pruning rounds of 20
    # epochs to 0.1, 0.2 ... 0.9 and 0.95, each ramping over its first 4 epochs (--pruning_interval=4),
    # pruning every 10 batches; growth up to 1.5x: one round widens every layer, fc2 too, to sqrt(1.5)x its
    # filters rounded up (CPG: down), 1.502x VGG16-BN's weights, which the cap of 1.51 admits.
    # For a GPU: experiments/cl_bench/cifar100_gpu.flags.
    "cifar100_cpg20": dict(train_steps=7800, steps_per_round=1560, prune_steps=312, prune_frequency=10, batch_size=32,
                           targets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95), expansion_ratio=1.5,
                           expansion_cap=1.51, eval_every=780),
}
FULL["cifar100_resnet18"] = FULL["cifar100_cpg20"]
# Each sequence's run time relative to split5's (seed 0, every method, the default configuration: 172, 495
# and 641 s on the 2-core CPU, 2026-12-07): parallel workers take the longest first.
COST = {"split5": 1.0, "permuted10": 2.9, "permuted20_small": 3.7}
# The same in a --quick run, where tracing the networks dominates and the small CNN's costs most (29, 21 and 21 s
# of its methods' time, 2026-12-07): split5 first lets one worker take it while the other runs the two others.
QUICK_COST = {"split5": 1.4, "permuted10": 1.0, "permuted20_small": 1.0}
# The sequences a plain run measures (CIFAR-100 needs the user's download and a GPU).
DEFAULT_SEQUENCES = ("split5", "permuted10", "permuted20_small")
QUICK = dict(train_steps=12, steps_per_round=4, prune_steps=2, prune_frequency=1, targets=(0.5,), batch_size=32,
             eval_batch_size=256, eval_every=12)
# Tasks of each sequence a --quick run keeps: enough for every method's every path (growth, picks, the rule
# at the cap), few enough that the networks' tracing, which dominates a quick run, stays under a minute.
QUICK_TASKS = 3
# The sequence on which fine-tuning must show forgetting (its tasks contradict each other's inputs).
MUST_FORGET = ("permuted10",)

FLAGS = flags.FLAGS


def define_flags():
    from paenet.cl.benchmark import ALL_METHODS, GOAL_FROM
    from paenet.cl.sequences import SEQUENCES
    from paenet.data.idx import FASHION_MNIST_DIR
    flags.DEFINE_list("sequences", list(DEFAULT_SEQUENCES), f"Task sequences: {', '.join(SEQUENCES)}.")
    flags.DEFINE_list("methods", list(ALL_METHODS), f"Methods: {', '.join(ALL_METHODS)}.")
    flags.DEFINE_string("fashion_mnist_dir", FASHION_MNIST_DIR, "Folder of Fashion-MNIST's four IDX files.")
    flags.DEFINE_string("data_dir", None, "TFDS data folder holding paenet_cifar100 (cifar100_cpg20 only).")
    flags.DEFINE_string("output_dir", "cl_bench_results", "Where results.json, results.md and plots go.")
    flags.DEFINE_bool("quick", False, "A few hundred images, tiny networks, a dozen steps, the first "
                                      f"{QUICK_TASKS} tasks: a check, not a measurement.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds, each a full run (its validation split, permutations, "
                                                "initialisation and data order); intervals are over them (--quick: 0 alone "
                                                "unless given).")
    flags.DEFINE_float("steps_scale", 1.0, "Multiplies every step count (a GPU flag file scales up).")
    flags.DEFINE_float("width_scale", 1.0, "Multiplies every backbone width (a GPU flag file scales up).")
    flags.DEFINE_float("margin", None, "Goal = the independent model's validation accuracy minus this (default: "
                                       "each sequence's, at least twice the validation noise the runs measure: "
                                       "0.02, permuted20_small 0.04).")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate for the weights.")
    flags.DEFINE_float("pick_learning_rate", 5e-4, "Adam's learning rate for CPG's picking masks.")
    flags.DEFINE_integer("batch_size", None, "Training batch size (default: the sequence's, 128; CIFAR-100 32).")
    flags.DEFINE_list("from_results", [], "Run nothing: read these results.json files (with --readme).")
    flags.DEFINE_string("readme", None, "Rewrite the generated table of this Markdown file from the results.")
    flags.DEFINE_bool("progress", True, "Progress bars.")
    flags.DEFINE_enum("goal_from", "phase", GOAL_FROM, "Goals from independent's best validation accuracy within "
                      "one training phase (phase) or within the whole budget it trains (budget).")
    flags.DEFINE_integer("jobs", min(2, os.cpu_count() or 1),
                         "Worker processes, each running one (sequence, seed) at a time; 1 runs in this process. "
                         "The results do not depend on it.")


def config_for(sequence: str, quick: bool, steps_scale: float = 1.0, **overrides):
    """The ``BenchConfig`` of `sequence`: the full CPU configuration (or the quick one) with the
    `overrides` that are not None, step counts multiplied by `steps_scale`."""
    from paenet.cl.benchmark import BenchConfig
    values = {**(QUICK if quick else FULL[sequence]), **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("train_steps", "steps_per_round", "prune_steps", "eval_every"):
        if key in values:
            values[key] = max(1, round(values[key] * steps_scale))
    return BenchConfig(**values)


def _scaled(kwargs: dict, scale: float) -> dict:
    if scale == 1.0:
        return kwargs
    scaled = {"widths": tuple(max(1, round(w * scale)) for w in kwargs.get("widths", ())),
              "dense_units": max(1, round(kwargs.get("dense_units", 0) * scale))}
    return {**kwargs, **{k: v for k, v in scaled.items() if k in kwargs}}


def seeds() -> list[int]:
    """The --seeds as integers (--quick without --seeds: seed 0 alone); ValueError naming the flag when
    one is not."""
    given = FLAGS.seeds if FLAGS["seeds"].present or not FLAGS.quick else ["0"]
    try:
        values = [int(s) for s in given]
    except ValueError:
        raise ValueError(f"--seeds={','.join(given)}: must be a list of integers") from None
    if not values or len(set(values)) != len(values) or min(values) < 0:
        raise ValueError(f"--seeds={','.join(given)}: must be distinct non-negative integers")
    return values


def check_flags():
    from paenet.cl.benchmark import ALL_METHODS
    from paenet.cl.sequences import SEQUENCES
    for name, known, values in (("sequences", SEQUENCES, FLAGS.sequences), ("methods", ALL_METHODS, FLAGS.methods)):
        unknown = [v for v in values if v not in known]
        if unknown or not values:
            raise ValueError(f"--{name}: unknown {unknown or 'none given'}; choose among {', '.join(known)}")
    for name in ("steps_scale", "width_scale", "learning_rate", "pick_learning_rate", "batch_size", "jobs"):
        if getattr(FLAGS, name) is not None and getattr(FLAGS, name) <= 0:
            raise ValueError(f"--{name} must be positive, got {getattr(FLAGS, name)}")
    if FLAGS.margin is not None and not 0.0 <= FLAGS.margin < 1.0:
        raise ValueError(f"--margin must be in [0, 1), got {FLAGS.margin}")
    seeds()
    if FLAGS.from_results and not FLAGS.readme:
        raise ValueError("--from_results needs --readme (the file whose table it rewrites)")


def _commit() -> str:
    """This checkout's commit, marked ``+changes`` when the working tree differs from it."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def _plots(name: str, results: dict, caption: str) -> None:
    """The sequence's two plots, each method's figures averaged over the seeds."""
    import numpy as np

    from paenet import plots
    first = next(iter(results.values()))[0]
    plots.final_accuracy_per_task({m: np.mean([r.final() for r in rs], axis=0).tolist() for m, rs in results.items()},
                                  first.matrix.task_names,
                                  os.path.join(FLAGS.output_dir, f"{name}_final_accuracy.png"), caption)
    plots.accuracy_against_size({m: (float(np.mean([r.size_mb for r in rs])), float(np.mean([r.final().mean() for r in rs])))
                                 for m, rs in results.items()},
                                os.path.join(FLAGS.output_dir, f"{name}_accuracy_vs_size.png"), caption)


@dataclasses.dataclass(frozen=True)
class Job:
    """One (sequence, seed) run of every method: what a worker process needs, nothing read from FLAGS."""

    sequence: str
    seed: int
    methods: tuple
    quick: bool
    steps_scale: float
    width_scale: float
    overrides: dict
    fashion_mnist_dir: str
    data_dir: str | None
    progress: bool


def run_job(job: Job) -> dict:
    """Every method of `job` over its sequence and seed, each result checked (``BenchmarkFailure``
    otherwise): the sequence's configuration and, in ``ALL_METHODS``' order, the MethodResults asked for."""
    from paenet.cl.benchmark import BASELINES, check, run_sequence
    from paenet.cl.sequences import load_sequence
    sequence = load_sequence(job.sequence, job.fashion_mnist_dir, job.seed, job.quick, data_dir=job.data_dir)
    sequence = dataclasses.replace(sequence, backbone_kwargs=_scaled(sequence.backbone_kwargs, job.width_scale),
                                   tasks=sequence.tasks[:QUICK_TASKS] if job.quick else sequence.tasks)
    config = config_for(job.sequence, job.quick, job.steps_scale, **job.overrides)
    baselines, results = {}, []
    for result in run_sequence(sequence, job.methods, config, job.progress):
        if result.method in BASELINES:
            baselines[result.method] = result
        check(result, must_forget=job.sequence in MUST_FORGET and not job.quick,
              independent=baselines.get("independent"))
        if result.method in job.methods:
            results.append(result)
    return {"config": {**dataclasses.asdict(config), "backbone": sequence.backbone,
                       "backbone_kwargs": {k: list(v) if isinstance(v, tuple) else v
                                           for k, v in sequence.backbone_kwargs.items()}},
            "results": results, "baselines": baselines}


def run_jobs(jobs: list[Job], workers: int):
    """Yields (index of the job in `jobs`, ``run_job(job)``) as each job finishes: in this process with one worker, else in
    `workers` spawned processes (TensorFlow does not survive a fork), the longest sequences first.
    Networks this small leave most of a core idle between TensorFlow's ops (the per-step work in Python
    is single-threaded), so two processes on two cores do nearly twice the steps of one. Each worker keeps
    TensorFlow's default threads, as one process has: a run's numbers do not depend on `workers`."""
    if workers <= 1 or len(jobs) <= 1:
        for k, job in enumerate(jobs):
            yield k, run_job(job)
        return
    import concurrent.futures
    import multiprocessing
    order = sorted(range(len(jobs)), key=lambda k: -(QUICK_COST if jobs[k].quick else COST).get(jobs[k].sequence, 1.0))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, jobs[k]): k for k in order}
        try:
            for future in concurrent.futures.as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def measure(save) -> dict:
    """Every sequence x seed x method; the results file's contents, also handed to `save` after each
    (sequence, seed) finishes (a long run leaves what it finished). The rows and runs are in the
    sequences', seeds' and methods' order, whatever order the jobs finish in."""
    from paenet.benchmarks.timing import device_name
    from paenet.cl.summary import summarise, validation_noise
    from tqdm import tqdm
    device = device_name()
    meta = {"commit": _commit(), "command": " ".join(["python -m paenet.cl_bench", *sys.argv[1:]]),
            "device": device, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "results_path": os.path.join(FLAGS.output_dir, "results.json"), "seeds": seeds(), "configs": {},
            "jobs": FLAGS.jobs}
    overrides = dict(margin=FLAGS.margin, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
                     pick_learning_rate=FLAGS.pick_learning_rate, goal_from=FLAGS.goal_from)
    parallel = FLAGS.jobs > 1
    jobs = [Job(name, seed, tuple(FLAGS.methods), FLAGS.quick, FLAGS.steps_scale, FLAGS.width_scale, overrides,
                FLAGS.fashion_mnist_dir, FLAGS.data_dir, FLAGS.progress and not parallel)
            for name in FLAGS.sequences for seed in seeds()]
    done: dict = {}       # job index -> run_job's outcome
    started = time.perf_counter()

    def contents():
        rows, runs = [], []
        for k in sorted(done):
            rows += [r.row(done[k]["baselines"], device) for r in done[k]["results"]]
            runs += [r.to_dict() for r in done[k]["results"]]
        meta["wall_seconds"] = time.perf_counter() - started
        return {"meta": meta, "summary": summarise(rows), "noise": validation_noise(runs), "rows": rows, "runs": runs}

    bar = tqdm(total=len(jobs), desc="sequence x seed", disable=not (FLAGS.progress and parallel))
    for k, outcome in run_jobs(jobs, FLAGS.jobs):
        done[k] = outcome
        meta["configs"][jobs[k].sequence] = outcome["config"]
        for result in outcome["results"]:
            print(json.dumps(result.row(outcome["baselines"], device)), flush=True)
        bar.update()
        same = [i for i, j in enumerate(jobs) if j.sequence == jobs[k].sequence]
        if all(i in done for i in same):
            results = [r for i in same for r in done[i]["results"]]
            _plots(jobs[k].sequence, {m: [r for r in results if r.method == m] for m in dict.fromkeys(r.method for r in results)},
                   f"{meta['command']}\ncommit {meta['commit']}, {device}, {meta['date']}")
        save(contents())
    bar.close()
    results = contents()
    for line in results["summary"]:
        print(json.dumps(line), flush=True)
    return results


def run() -> int:
    from paenet.cl.summary import margins, markdown, noise_sentence, orderings, readme_section, replace_section
    from paenet.fileio import write_json_atomic
    check_flags()
    if FLAGS.from_results:
        results = []
        for path in FLAGS.from_results:
            with open(path) as f:
                results.append(json.load(f))
    else:
        os.makedirs(FLAGS.output_dir, exist_ok=True)

        def save(results):
            write_json_atomic(os.path.join(FLAGS.output_dir, "results.json"), results)
            with open(os.path.join(FLAGS.output_dir, "results.md"), "w") as f:
                f.write(markdown(results["summary"]) + "\n" + orderings(results["summary"]) + "\n\n"
                        + noise_sentence(results["noise"], margins(results)) + "\n")

        results = [measure(save)]
    if FLAGS.readme:
        with open(FLAGS.readme) as f:
            text = replace_section(f.read(), readme_section(results))
        with open(FLAGS.readme, "w") as f:
            f.write(text)
    return 0


def main(argv):
    from paenet.cl.benchmark import BenchmarkFailure
    from paenet.data.idx import IdxError
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        sys.exit(run())
    except (ValueError, BenchmarkFailure, IdxError, FileNotFoundError, KeyError) as e:
        print(f"paenet.cl_bench: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
