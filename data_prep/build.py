"""Build a data set from files the user downloaded: ``python -m data_prep.build NAME --manual_dir=DIR``.

NAME is one of ``paenet.datasets.builders.BUILDERS`` (adience, affectnet, cifar100, fashion_mnist, fer2013,
fotw_gender, imdb_wiki, lfw, utkface, vggface2), optionally with a config (``lfw/images``,
``adience/faces``). Nothing is downloaded.
Prints one JSON object: the data set, where it was written, and the examples per split.
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import json

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("manual_dir", None, "Folder holding the extracted archive (see each builder's "
                                            "MANUAL_DOWNLOAD_INSTRUCTIONS).", required=True)
    flags.DEFINE_string("data_dir", None, "Where TFDS writes the prepared data (default: TFDS's own).")


def build(name: str, manual_dir: str, data_dir: str | None = None):
    """Prepares data set `name` (``adience`` or ``adience/faces``) from `manual_dir`; returns the builder."""
    import tensorflow_datasets as tfds
    from paenet.datasets.builders import BUILDERS
    dataset, _, config = name.partition("/")
    if dataset not in BUILDERS:
        raise ValueError(f"unknown data set {dataset!r}; choose one of {sorted(BUILDERS)}")
    builder = BUILDERS[dataset](data_dir=data_dir, config=config or None)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP))
    return builder


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m data_prep.build NAME --manual_dir=DIR [--data_dir=DIR]")
    from paenet.cli import report_errors
    builder = report_errors("data_prep.build", lambda: build(argv[1], FLAGS.manual_dir, FLAGS.data_dir))
    print(json.dumps({"dataset": builder.info.full_name, "data_dir": str(builder.data_dir),
                      "splits": {s: v.num_examples for s, v in builder.info.splits.items()}}))


if __name__ == "__main__":
    define_flags()
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
