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
import functools
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
# and 641 s on the 2-core CPU, 2026-12-07): parallel workers start the longest's first part first.
COST = {"split5": 1.0, "permuted10": 2.9, "permuted20_small": 3.7}
# The same in a --quick run, where tracing the networks dominates and the small CNN's costs most (29, 21 and 21 s
# of its methods' time, 2026-12-07): split5's first part starts first.
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
# The methods in paenet.cl.benchmark's order (ALL_METHODS: its registry's) and the goals' sources
# (GOAL_FROM), named here for the flags: a parallel run's main process never loads TensorFlow, which the
# registry does, so that its workers start at once. A test holds them equal; every sequence has a FULL entry.
METHODS = ("independent", "independent_pruned", "finetune", "cpg", "packnet", "pae", "piggyback")
GOAL_FROM = ("phase", "budget")

FLAGS = flags.FLAGS


def define_flags():
    from paenet.data.idx import FASHION_MNIST_DIR
    flags.DEFINE_list("sequences", list(DEFAULT_SEQUENCES), f"Task sequences: {', '.join(FULL)}.")
    flags.DEFINE_list("methods", list(METHODS), f"Methods: {', '.join(METHODS)}.")
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
                         "Worker processes sharing the methods of every (sequence, seed); 1 runs them all in this "
                         "process. The results do not depend on it.")


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
    for name, known, values in (("sequences", FULL, FLAGS.sequences), ("methods", METHODS, FLAGS.methods)):
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


def _plots(name: str, runs: dict, caption: str) -> None:
    """The sequence's two plots from its runs (``MethodResult.to_dict``; method -> one per seed), each
    method's figures averaged over the seeds."""
    import numpy as np

    from paenet import plots
    final = {m: np.mean([r["accuracy"][-1] for r in rs], axis=0) for m, rs in runs.items()}
    plots.final_accuracy_per_task({m: f.tolist() for m, f in final.items()}, next(iter(runs.values()))[0]["tasks"],
                                  os.path.join(FLAGS.output_dir, f"{name}_final_accuracy.png"), caption)
    plots.accuracy_against_size({m: (float(np.mean([r["size_mb"] for r in rs])), float(final[m].mean()))
                                 for m, rs in runs.items()},
                                os.path.join(FLAGS.output_dir, f"{name}_accuracy_vs_size.png"), caption)


@dataclasses.dataclass(frozen=True)
class Job:
    """Methods over one (sequence, seed): what a worker process needs, nothing read from FLAGS. With
    `baselines` (``run_job``'s, of a job that ran ``independent`` on the same sequence and seed) the
    goals and budgets come from them and independent does not run again."""

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
    baselines: bytes | None = None


@functools.lru_cache(maxsize=8)
def _sequence(name: str, directory: str, seed: int, quick: bool, data_dir: str | None, width_scale: float):
    """The sequence as a job runs it, loaded once per process (a worker runs several jobs of one sequence)."""
    from paenet.cl.sequences import load_sequence
    sequence = load_sequence(name, directory, seed, quick, data_dir=data_dir)
    return dataclasses.replace(sequence, backbone_kwargs=_scaled(sequence.backbone_kwargs, width_scale),
                               tasks=sequence.tasks[:QUICK_TASKS] if quick else sequence.tasks)


def run_job(job: Job) -> dict:
    """The methods of `job` over its sequence and seed, each result checked (``BenchmarkFailure``
    otherwise), as plain data: the sequence's configuration, the device, and in ``METHODS``' order each
    method's row (``MethodResult.row``, against the baselines) and run (``MethodResult.to_dict``); and the
    baselines (``independent``, ``independent_pruned``) pickled, which the main process passes on to the
    job's other parts without loading what they are made of."""
    import pickle

    from paenet.benchmarks.timing import device_name
    from paenet.cl.benchmark import BASELINES, check, run_sequence
    sequence = _sequence(job.sequence, job.fashion_mnist_dir, job.seed, job.quick, job.data_dir, job.width_scale)
    config = config_for(job.sequence, job.quick, job.steps_scale, **job.overrides)
    baselines, results = pickle.loads(job.baselines) if job.baselines else {}, []
    for result in run_sequence(sequence, job.methods, config, job.progress, baselines.get("independent")):
        if result.method in BASELINES:
            baselines[result.method] = result
        check(result, must_forget=job.sequence in MUST_FORGET and not job.quick,
              independent=baselines.get("independent"))
        if result.method in job.methods:
            results.append(result)
    device = device_name()
    return {"config": {**dataclasses.asdict(config), "backbone": sequence.backbone,
                       "backbone_kwargs": {k: list(v) if isinstance(v, tuple) else v
                                           for k, v in sequence.backbone_kwargs.items()}},
            "device": device, "rows": [r.row(baselines, device) for r in results],
            "runs": [r.to_dict() for r in results], "baselines": job.baselines or pickle.dumps(baselines)}


def run_jobs(jobs: list[Job], workers: int):
    """Runs every job (each one (sequence, seed), its methods); yields (index of the job in `jobs`, what
    ``run_job`` returned for some of its methods, whether that was the job's last part) as each part
    finishes. With one worker each job runs whole, in this process. Otherwise the parts run in `workers`
    spawned processes (TensorFlow does not survive a fork): first each job's ``independent`` (with
    ``independent_pruned``), the longest sequences first, then each of its other methods apart, given
    those baselines, so that the workers share the methods of a sequence rather than waiting on the
    longest one. Networks this small leave most of a core idle between TensorFlow's ops (the per-step
    work in Python is single-threaded), so two processes on two cores do nearly twice the steps of one.
    Each worker keeps TensorFlow's default threads, as one process has, and every method starts from its
    sequence's seed: a run's numbers do not depend on `workers`."""
    if workers <= 1:
        for k, job in enumerate(jobs):
            yield k, run_job(job), True
        return
    import concurrent.futures
    import multiprocessing
    first = ("independent", "independent_pruned")
    order = sorted(range(len(jobs)), key=lambda k: -(QUICK_COST if jobs[k].quick else COST).get(jobs[k].sequence, 1.0))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running, parts = {}, {}        # future -> (job index, its first part?); job index -> parts left
        for k in order:
            methods = tuple(m for m in jobs[k].methods if m in first)
            running[pool.submit(run_job, dataclasses.replace(jobs[k], methods=methods))] = k, True
            parts[k] = 1
        try:
            while running:
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    (k, is_first), outcome = running.pop(future), future.result()
                    if is_first:
                        rest = [m for m in jobs[k].methods if m not in first]
                        for method in rest:
                            part = dataclasses.replace(jobs[k], methods=(method,), baselines=outcome["baselines"])
                            running[pool.submit(run_job, part)] = k, False
                        parts[k] += len(rest)
                    parts[k] -= 1
                    if not running:
                        pool.shutdown(wait=False)     # the workers exit while the last part's plots are drawn
                    yield k, outcome, parts[k] == 0
        except BaseException:
            for future in running:
                future.cancel()
            raise


def measure(save) -> dict:
    """Every sequence x seed x method; the results file's contents, also handed to `save` after each
    part of a (sequence, seed) finishes (a long run leaves what it finished). The rows and runs are in the
    sequences', seeds' and methods' order, whatever order the jobs finish in."""
    from tqdm import tqdm
    meta = {"commit": _commit(), "command": " ".join(["python -m paenet.cl_bench", *sys.argv[1:]]),
            "device": None, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "results_path": os.path.join(FLAGS.output_dir, "results.json"), "seeds": seeds(), "configs": {},
            "jobs": FLAGS.jobs}
    overrides = dict(margin=FLAGS.margin, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
                     pick_learning_rate=FLAGS.pick_learning_rate, goal_from=FLAGS.goal_from)
    parallel = FLAGS.jobs > 1
    jobs = [Job(name, seed, tuple(FLAGS.methods), FLAGS.quick, FLAGS.steps_scale, FLAGS.width_scale, overrides,
                FLAGS.fashion_mnist_dir, FLAGS.data_dir, FLAGS.progress and not parallel)
            for name in FLAGS.sequences for seed in seeds()]
    done: dict = {}       # job index -> its (row, run) pairs so far
    finished = set()
    started = time.perf_counter()

    def contents():
        from paenet.cl.summary import summarise, validation_noise    # here: the workers start without waiting for SciPy
        pairs = [pair for k in sorted(done) for pair in sorted(done[k], key=lambda p: METHODS.index(p[0]["method"]))]
        meta["wall_seconds"] = time.perf_counter() - started
        rows, runs = [row for row, _ in pairs], [run for _, run in pairs]
        return {"meta": meta, "summary": summarise(rows), "noise": validation_noise(runs), "rows": rows, "runs": runs}

    bar = tqdm(total=len(jobs), desc="sequence x seed", disable=not (FLAGS.progress and parallel))
    for k, outcome, last in run_jobs(jobs, FLAGS.jobs):
        done.setdefault(k, []).extend(zip(outcome["rows"], outcome["runs"]))
        meta["configs"][jobs[k].sequence], meta["device"] = outcome["config"], outcome["device"]
        for row in outcome["rows"]:
            print(json.dumps(row), flush=True)
        if last:
            finished.add(k)
            bar.update()
            same = [i for i, j in enumerate(jobs) if j.sequence == jobs[k].sequence]
            if all(i in finished for i in same):
                runs = [run for i in same for _, run in done[i]]
                _plots(jobs[k].sequence, {m: [r for r in runs if r["method"] == m] for m in METHODS
                                          if any(r["method"] == m for r in runs)},
                       f"{meta['command']}\ncommit {meta['commit']}, {meta['device']}, {meta['date']}")
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
    from concurrent.futures import BrokenExecutor

    from paenet.data.idx import IdxError
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        sys.exit(run())
    except (ValueError, IdxError, FileNotFoundError, KeyError) as e:
        error = e
    except BrokenExecutor:
        error = (f"a worker process ended abruptly (killed, or out of memory?); the parts that finished before "
                 f"it are in {os.path.join(FLAGS.output_dir, 'results.json')}, if any did")
    except RuntimeError as e:
        from paenet.cl.benchmark import BenchmarkFailure     # loaded already where one was raised
        if not isinstance(e, BenchmarkFailure):
            raise
        error = e
    print(f"paenet.cl_bench: error: {error}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    define_flags()
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
