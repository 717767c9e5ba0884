"""Continual learning on real data: task sequences over Fashion-MNIST and the backbones they run on."""
from paenet.cl.sequences import SEQUENCES, Sequence, SequenceSpec, TaskData, load_sequence, split_fashion_mnist

__all__ = ["SEQUENCES", "Sequence", "SequenceSpec", "TaskData", "load_sequence", "split_fashion_mnist"]
