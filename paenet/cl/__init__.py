"""Continual learning on real data: task sequences over Fashion-MNIST and CIFAR-100, and their backbones."""
from paenet.cl.sequences import (SEQUENCES, Sequence, SequenceSpec, SplitData, TaskData, load_sequence, split_cifar100,
                                 split_fashion_mnist)

__all__ = ["SEQUENCES", "Sequence", "SequenceSpec", "SplitData", "TaskData", "load_sequence", "split_cifar100",
           "split_fashion_mnist"]
