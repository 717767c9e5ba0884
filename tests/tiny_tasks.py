"""Tiny registered tasks for fast end-to-end runs of ``paenet.main`` (``--task_module=tiny_tasks`` with
this folder on the path): noise images whose label is the place of a bright patch (``tiny_a``, ``tiny_b``),
and ``tiny_noise``, the same noise with no patch, whose labels nothing in the images tells (a goal of 1.0
misses at every width, whatever the training's rounding)."""
import numpy as np

from paenet.tasks.demo import classification_data
from paenet.tasks.registry import TaskDefinition, register


def _patches(classes: int, seed: int, patch: bool = True):
    def load(context):
        rng = np.random.default_rng(seed)
        size = context.image_size
        labels = np.arange(96) % classes
        images = rng.uniform(0, 100, size=(96, size, size, 3)).astype(np.float32)
        for image, label in zip(images, labels if patch else ()):
            row = int(label) * size // classes
            image[row: row + size // classes, : size // 2] += 150.0
        return classification_data(images, labels, context)
    return load


for _name, _classes, _seed in (("tiny_a", 2, 1), ("tiny_b", 3, 2)):
    register(TaskDefinition(_name, _classes, f"tiny test task ({_classes} patch places)", _patches(_classes, _seed)),
             replace=True)
register(TaskDefinition("tiny_noise", 3, "tiny test task (3 labels no image tells)", _patches(3, 3, patch=False)),
         replace=True)
