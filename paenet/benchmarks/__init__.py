"""Benchmark rows for ``python -m paenet.bench``: each module's ``rows(quick)`` yields row dicts."""
