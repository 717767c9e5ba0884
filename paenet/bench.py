"""``python -m paenet.bench``: performance rows as JSON lines, each ours vs a reference in the same run.

Every row: ``name``, ``ours``, ``reference``, ``unit`` (a rate: higher is better), ``ratio`` = ours /
reference, ``device``, and ``config`` (what was measured).
"""
from __future__ import annotations

import importlib
import json
import sys

from absl import app, flags

BENCHMARK_MODULES = ("paenet.benchmarks.core", "paenet.benchmarks.inception", "paenet.benchmarks.expansion",
                     "paenet.benchmarks.data")

flags.DEFINE_bool("quick", False, "Tiny models and few repeats: checks that every row runs, not a measurement.")
flags.DEFINE_list("only", [], "Print only the rows with these names.")
FLAGS = flags.FLAGS


def run(quick: bool = False, only=(), out=sys.stdout) -> list[dict]:
    from paenet.benchmarks.timing import device_name
    device = device_name()
    results = []
    for module_name in BENCHMARK_MODULES:
        for r in importlib.import_module(module_name).rows(quick=quick):
            if only and r["name"] not in only:
                continue
            r["device"] = device
            print(json.dumps(r), file=out, flush=True)
            results.append(r)
    return results


def main(argv):
    del argv
    run(FLAGS.quick, FLAGS.only)


if __name__ == "__main__":
    app.run(main)
