"""Runs ``python -m paenet.main``'s ``main`` in the test process (its flags defined once, for every test
module that uses it): faster than a subprocess for checks that end before any training."""
import pytest
from absl import flags

from paenet import main as paenet_main

FLAGS = flags.FLAGS
if "workspace" not in FLAGS:
    paenet_main.define_flags()


def run_main(argv, capsys) -> tuple[int, list[str]]:
    """``paenet.main`` with `argv`: its exit status and its stderr lines."""
    FLAGS.unparse_flags()
    FLAGS(["paenet.main", *argv])
    try:
        with pytest.raises(SystemExit) as e:
            paenet_main.main(["paenet.main"])
    finally:
        FLAGS.unparse_flags()
    return e.value.code, capsys.readouterr().err.strip().splitlines()
