"""Command-line entry points run once per data set: ``align`` (MTCNN face crops) and ``build`` (the
TFDS builders). They depend on the library, whose parts they run live in ``paenet.alignment`` and
``paenet.datasets``; nothing in ``paenet`` imports this package."""
