"""TFDS builders for the manually downloaded data sets (faces; Fashion-MNIST and CIFAR-100 for the
continual-learning benchmark), one module each, and their class names (``labels``, which needs no TFDS).
``paenet.datasets.builders`` registers them all; ``python -m data_prep.build`` builds one."""
