"""A quiet terminal for PAENet's commands: imported first by every entry point, before TensorFlow.

TensorFlow 2.21 logs through two copies of absl's C++ logging, and its start-up lines (oneDNN is on, no
CUDA driver found: once per copy) are written while it loads, before it applies ``TF_CPP_MIN_LOG_LEVEL``;
on a machine without an NVIDIA driver its first device listing adds ``E0000 ... failed call to cuInit``,
which that level only hides at 3 (every error). So a command, unless ``-v``/``--verbosity`` asks for logs:

* sets ``TF_CPP_MIN_LOG_LEVEL=2`` (when the user has not set it): TensorFlow's later INFO and WARNING
  lines are hidden, its errors still shown;
* imports TensorFlow, whenever that first happens, with the process's stderr captured, lists its
  devices, and writes back what it captured except the lines that level would have hidden and, where no
  CUDA driver was found, the failed ``cuInit`` probe;
* sets absl's Python logging to WARNING (a given ``--verbosity`` overrides it when flags are parsed),
  and leaves TensorFlow's Python warnings to absl's handler alone (each is printed once).

A module imported as a library (the ``__main__`` module is not one of this project's files) is left alone.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOG_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
SEVERITY = "IWEF"
BEFORE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
NO_DRIVER = "Could not find cuda drivers on your machine"
CUINIT = "failed call to cuInit"


def verbosity_requested(argv: list[str]) -> bool:
    """Whether `argv` sets absl's ``-v``/``--verbosity`` to 0 (INFO) or more."""
    for i, arg in enumerate(argv):
        name, has_value, value = arg.partition("=")
        if name in ("-v", "--v", "--verbosity"):
            if not has_value:
                value = argv[i + 1] if i + 1 < len(argv) else ""
            try:
                return int(value) >= 0
            except ValueError:
                return False   # absl itself reports the bad value
    return False


def startup_noise_removed(text: str, min_level: int) -> str:
    """`text` captured while TensorFlow loaded, without the lines below `min_level` (0 INFO ... 3 FATAL)
    and without the failed cuInit probe when the same text says no CUDA driver was found."""
    no_driver = NO_DRIVER in text
    kept = []
    for line in text.splitlines(keepends=True):
        match = GLOG_LINE.match(line)
        if line.rstrip("\n") == BEFORE_INIT and min_level > 0:
            continue
        if match and (SEVERITY.index(match.group(1)) < min_level or (no_driver and CUINIT in line)):
            continue
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def _stderr_filtered(min_level: int):
    """Captures file descriptor 2 (C++ and Python writes alike) and writes back what is not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(startup_noise_removed(capture.read().decode(errors="replace"), min_level))
            sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with stderr filtered, followed by the first device listing."""

    def __init__(self, loader, min_level: int):
        self.loader = loader
        self.min_level = min_level

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _stderr_filtered(self.min_level):
            self.loader.exec_module(module)
            module.config.list_physical_devices()
        # TensorFlow gives its logger a handler of its own when the root logger has none yet, as before
        # absl.app.run installs absl's: every warning would then be printed twice.
        tf_logger = module.get_logger()
        for handler in list(tf_logger.handlers):
            tf_logger.removeHandler(handler)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders and hands it the quiet loader; then leaves."""

    def __init__(self, min_level: int):
        self.min_level = min_level

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self.min_level)
        return spec


def _started_as_command() -> bool:
    """A command of this project, or a worker process one spawned (which imports the command's module as
    ``__mp_main__``)."""
    for name in ("__main__", "__mp_main__"):
        main_file = getattr(sys.modules.get(name), "__file__", None)
        if main_file and Path(main_file).resolve().is_relative_to(ROOT):
            return True
    return False


def _install():
    if not _started_as_command() or verbosity_requested(sys.argv[1:]):
        return
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        min_level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        min_level = 0
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder(min_level))


_install()
