"""``python -m paenet.bench``: performance rows as JSON lines, each ours vs a reference in the same run.

Every row: ``name``, ``ours``, ``reference``, ``unit`` (a rate: higher is better), ``ratio`` = ours /
reference, ``device``, and ``config`` (what was measured). ``--only=NAME,...`` measures those rows and
sets up nothing else; ``--list`` names every row.
"""
from __future__ import annotations

import importlib
import json
import sys

from absl import app, flags

BENCHMARK_MODULES = ("paenet.benchmarks.core", "paenet.benchmarks.inception", "paenet.benchmarks.expansion",
                     "paenet.benchmarks.growth", "paenet.benchmarks.peak", "paenet.benchmarks.data",
                     "paenet.benchmarks.distributed")

flags.DEFINE_bool("quick", False, "Tiny models and few repeats: checks that every row runs, not a measurement.")
flags.DEFINE_list("only", [], "Measure only the rows with these names (see --list).")
flags.DEFINE_bool("list", False, "Print the name of every row, one a line, and measure nothing.")
FLAGS = flags.FLAGS


def row_names() -> list[str]:
    """Every row's name, in the order the rows are measured."""
    return [name for module in BENCHMARK_MODULES for group in importlib.import_module(module).GROUPS
            for name in group.names]


class UnknownRows(ValueError):
    """``only`` names a row that does not exist."""


def run(quick: bool = False, only=(), out=sys.stdout) -> list[dict]:
    """Measures every row, or only those named in `only` (an unknown name is a ValueError), printing each
    as a JSON line to `out` as soon as it is measured. An unknown name raises ``UnknownRows`` before
    anything is measured."""
    from paenet.benchmarks.timing import device_name
    unknown = sorted(set(only) - set(row_names()))
    if unknown:
        raise UnknownRows(f"--only: no benchmark row named {', '.join(unknown)} (python -m paenet.bench --list "
                         "names them)")
    device = device_name()
    results = []
    for module_name in BENCHMARK_MODULES:
        for r in importlib.import_module(module_name).rows(quick=quick, only=set(only) or None):
            r["device"] = device
            print(json.dumps(r), file=out, flush=True)
            results.append(r)
    return results


def main(argv):
    del argv
    if FLAGS.list:
        print("\n".join(row_names()))
        return
    try:
        run(FLAGS.quick, FLAGS.only)
    except UnknownRows as e:
        print(f"paenet.bench: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
