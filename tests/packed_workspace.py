"""A small packed workspace for the export and report tests, made in a few seconds.

A SmallCNN packs a feature task ("face", no head: its output is the dense features) and two classifiers,
each trained briefly on noise images whose label is the place of a bright patch and pruned in two rounds; the third task first widens the network
by one expansion, so earlier tasks compute with sliced kernels. The workspace holds ``packing/`` and the
``evaluations.json`` and ``lfw_roc.json`` the app writes. The face task's "accuracy" is top-1 of its
features' argmax, which its loss pulls towards the label, and the ROC is a made-up curve: stand-ins for
the LFW protocol, which is not under test here.
"""
import json
import os

import keras
import numpy as np
import tensorflow as tf

from paenet.checkpoint import save_packing
from paenet.expansion import ExpansionPolicy
from paenet.models import SmallCNN, TaskSpec
from paenet.packing import Packer
from paenet.training import Trainer

SIZE = 16
TASKS = (TaskSpec("face", 0), TaskSpec("age", 3, ("young", "adult", "old")),
         TaskSpec("gender", 2, ("male", "female")))


def _feature_loss(labels, features):
    """Pulls the features towards a one-hot code of the label."""
    return tf.reduce_mean(tf.square(features - tf.one_hot(tf.cast(labels, tf.int32), tf.shape(features)[-1])))


def make_workspace(root: str) -> dict:
    """Packs the three tasks into ``root/packing`` and writes the workspace's logs; returns the packer,
    the workspace path, and the evaluation images and their labels (a task of C classes learns label % C)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=96)
    images = rng.normal(size=(96, SIZE, SIZE, 3)).astype(np.float32)
    for image, label in zip(images, labels):   # a bright patch whose place tells the label
        row, col = divmod(int(label), 3)
        image[row * 8: row * 8 + 6, col * 5: col * 5 + 6] += 2.0
    packer = Packer(SmallCNN(widths=(16, 32, 64), dense_units=64, input_shape=(SIZE, SIZE, 3), name="small"),
                    keras.optimizers.Adam(3e-3))
    evaluations, validation = [], {}
    for spec in TASKS:
        classes = spec.num_classes or 6
        train = tf.data.Dataset.from_tensor_slices((images[:64], labels[:64] % classes)).batch(16)
        val = tf.data.Dataset.from_tensor_slices((images[64:], labels[64:] % classes)).batch(16)
        task = packer.start_task(spec)
        trainer = Trainer(packer, None if spec.num_classes else _feature_loss, progress=False)
        validation[task] = val
        trainer.train(train, 8)
        if spec.name == "gender":
            packer.expand(ExpansionPolicy("uniform", ratio=1.5, cap=3.0))
            trainer.train(train, 4)
        trainer.prune_rounds(train, targets=[0.3, 0.6], steps_per_round=4, prune_steps=2, frequency=1,
                            validation=val if spec.num_classes else None)
        packer.finish({"val_accuracy": trainer.evaluate(val), "goal": 0.1, "chosen_sparsity": 0.6})
        for t in range(1, task + 1):
            evaluations += [{"after_task": task, "task": t, "name": packer.model.task_specs[t - 1].name,
                             "split": split, "metric": "accuracy", "value": trainer.evaluate(validation[t], t),
                             "data": f"the {split} images of {packer.model.task_specs[t - 1].name}"}
                            for split in ("val", "test")]
    workspace = os.path.join(root, "workspace")
    save_packing(packer, os.path.join(workspace, "packing"))
    with open(os.path.join(workspace, "evaluations.json"), "w") as f:
        json.dump(evaluations, f)
    fpr = np.linspace(0, 1, 21)
    with open(os.path.join(workspace, "lfw_roc.json"), "w") as f:
        json.dump({"task": "face", "data": "folds 6-10 of /data/ckplus/pairs.txt", "fpr": fpr.tolist(),
                   "tpr": np.sqrt(fpr).tolist(), "auc": 2 / 3}, f)
    return {"packer": packer, "workspace": workspace, "images": images[64:], "labels": labels[64:]}
