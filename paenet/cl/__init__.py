"""Continual learning on real data: task sequences over Fashion-MNIST and CIFAR-100 and their backbones
(``paenet.cl.sequences``), the benchmark over them (``paenet.cl.benchmark``) and its statistics
(``paenet.cl.summary``). Nothing is imported here: the benchmark's main process reads the statistics
without loading TensorFlow."""
