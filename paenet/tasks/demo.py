"""Demo tasks on the small real-image sets of ``../shared/data`` (or ``paenet.sources``' layout)."""
from __future__ import annotations

import numpy as np

from paenet.data import real_images
from paenet.data.arrays import array_dataset
from paenet.data.splits import stratified_split
from paenet.evaluation.classification import top1_validator
from paenet.tasks.registry import TaskContext, TaskData, TaskDefinition, register


def classification_data(images: np.ndarray, labels: np.ndarray, context: TaskContext,
                        val_fraction: float = 0.25, source: str = "the task's images", class_names=()) -> TaskData:
    """A seeded, stratified train/validation split of in-memory images (`source` says what they are, `class_names`
    name their classes), as TaskData. (These sets are too small for a separate test split: the validation split
    selects, and nothing is reported as test.)"""
    train, val = stratified_split(labels, val_fraction, context.seed)
    val_ds = array_dataset(images[val], labels[val], max(context.batch_size, 64))
    return TaskData(train=array_dataset(images[train], labels[train], context.batch_size, training=True,
                                        seed=context.seed),
                    validate=top1_validator(val_ds), sizes={"train": len(train), "val": len(val)},
                    data={"val": f"{len(val)} images of {source}: a seeded {val_fraction:.0%} per class"},
                    class_names=tuple(class_names), held_out={"val": val_ds})


def _real_image_task(name: str, description: str, loader, num_classes: int, relabel=None,
                     class_names=()) -> TaskDefinition:
    """A task on a ``real_images`` set: its classes are the set's (the folder's people), or, relabelled,
    `class_names`."""
    def load(context: TaskContext) -> TaskData:
        data = loader(context.data_dir, context.image_size)
        labels = relabel(data) if relabel else data.labels
        return classification_data(data.images, labels, context, source=description,
                                   class_names=() if relabel else data.class_names)
    return TaskDefinition(name, num_classes, description, load, tuple(class_names))


def _celebs_gender(data) -> np.ndarray:
    female = {"Madonna", "Mindy_Kaling"}
    return np.array([int(data.class_names[l] in female) for l in data.labels], np.int64)


for _definition in (
        _real_image_task("face_nonface", "LFW face crops vs background patches (lfw_subset/)",
                         real_images.face_nonface, 2, class_names=("face", "nonface")),
        _real_image_task("ckplus_identity", "the 10 CK+ subjects (ckplus/)", real_images.ckplus_identity, 10),
        _real_image_task("celebs_identity", "the 5 people of celebs/", real_images.celebs_identity, 5),
        _real_image_task("celebs_gender", "gender in celebs/ (fixed by identity: plumbing only)",
                         real_images.celebs_identity, 2, _celebs_gender, ("male", "female")),
):
    register(_definition)
