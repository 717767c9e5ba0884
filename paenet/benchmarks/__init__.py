"""Benchmark rows for ``python -m paenet.bench``: each module's ``GROUPS`` lists its rows, grouped by the
setup they share (``timing.Rows``)."""
