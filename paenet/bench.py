"""``python -m paenet.bench``: performance rows as JSON lines, each ours vs a reference in the same run.

Every row: ``name``, ``ours``, ``reference``, ``unit`` (a rate: higher is better), ``ratio`` = ours /
reference, ``device``, and ``config`` (what was measured). ``--only=NAME,...`` measures those rows and
sets up nothing else; ``--list`` names every row. Each group of rows (rows that share a setup) is measured
in a fresh Python process: in one process, rows measured after the others can run slower (2026-12-04, 2 cores:
the pruning update after 20 tasks took 123 ms in a one-process full run, 96 ms in an isolated one).
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import dataclasses
import importlib
import json
import subprocess
import sys

from absl import app, flags

BENCHMARK_MODULES = ("paenet.benchmarks.core", "paenet.benchmarks.inception", "paenet.benchmarks.expansion",
                     "paenet.benchmarks.growth", "paenet.benchmarks.peak", "paenet.benchmarks.data",
                     "paenet.benchmarks.distributed", "paenet.benchmarks.continual", "paenet.benchmarks.litert")

flags.DEFINE_bool("quick", False, "Tiny models and few repeats: checks that every row runs, not a measurement.")
flags.DEFINE_list("only", [], "Measure only the rows with these names (see --list).")
flags.DEFINE_bool("isolate", True, "Measure each group of rows that share a setup in a fresh Python process, "
                  "so that a row measures the same in a full run as alone; --noisolate measures every row here.")
flags.DEFINE_bool("list", False, "Print the name of every row, one a line, and measure nothing.")
FLAGS = flags.FLAGS


def row_names() -> list[str]:
    """Every row's name, in the order the rows are measured."""
    return [name for module in BENCHMARK_MODULES for group in importlib.import_module(module).GROUPS
            for name in group.names]


class UnknownRows(ValueError):
    """``only`` names a row that does not exist."""


class MeasurementFailed(RuntimeError):
    """The process measuring a group of rows failed (its own error is on stderr above)."""


def in_fresh_process(quick: bool, names):
    """The rows `names` (of one group), measured by ``python -m paenet.bench --noisolate --only=...`` in a
    new process whose stderr passes through: a ``Rows.measure`` for any group."""
    command = [sys.executable, "-m", "paenet.bench", "--noisolate", f"--only={','.join(names)}",
               *(["--quick"] if quick else [])]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        yield from (json.loads(line) for line in child.stdout)
    if child.returncode:
        raise MeasurementFailed(f"measuring {', '.join(names)}: its process exited with status {child.returncode}")


def run(quick: bool = False, only=(), out=sys.stdout, isolate: bool = False) -> list[dict]:
    """Measures every row, or only those named in `only` (an unknown name is a ValueError), printing each
    as a JSON line to `out` as soon as it is measured; with `isolate`, each group of rows in a fresh
    process (``in_fresh_process``), which names the device. An unknown name raises ``UnknownRows`` before
    anything is measured."""
    from paenet.benchmarks.timing import device_name, measure_rows
    unknown = sorted(set(only) - set(row_names()))
    if unknown:
        raise UnknownRows(f"--only: no benchmark row named {', '.join(unknown)} (python -m paenet.bench --list "
                         "names them)")
    device = None if isolate else device_name()  # a child names its own; this process leaves any GPU alone
    results = []
    for module_name in BENCHMARK_MODULES:
        groups = importlib.import_module(module_name).GROUPS
        if isolate:
            groups = tuple(dataclasses.replace(group, measure=in_fresh_process) for group in groups)
        for r in measure_rows(groups, quick, set(only) or None):
            r["device"] = device or r["device"]
            print(json.dumps(r), file=out, flush=True)
            results.append(r)
    return results


def main(argv):
    del argv
    if FLAGS.list:
        print("\n".join(row_names()))
        return
    try:
        run(FLAGS.quick, FLAGS.only, isolate=FLAGS.isolate)
    except (UnknownRows, MeasurementFailed) as e:
        print(f"paenet.bench: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
