"""Top-1 accuracy over every sample and confusion matrices for a task's classifier."""
from __future__ import annotations

import numpy as np

from paenet.training import predict, top1_accuracy


def top1_validator(dataset):
    """An evaluator ``f(model, task) -> accuracy``: top-1 of task `task` of `model` over every sample of
    `dataset` (batches of (x, y))."""
    return lambda model, task: top1_accuracy(model, task, dataset)


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """[C, C] counts: row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.shape[0]} labels but {predictions.shape[0]} predictions")
    return np.bincount(labels * num_classes + predictions, minlength=num_classes ** 2).reshape(num_classes,
                                                                                              num_classes)


def classification_report(labels, logits, num_classes: int) -> dict:
    """Top-1 over every sample, per-class recall (NaN for a class without samples), the confusion matrix."""
    confusion = confusion_matrix(labels, np.argmax(np.asarray(logits), axis=-1), num_classes)
    per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    per_class = np.where(confusion.sum(axis=1) > 0, per_class, np.nan)
    return {"top1": float(np.trace(confusion) / confusion.sum()), "samples": int(confusion.sum()),
            "per_class_accuracy": per_class.tolist(), "confusion": confusion.tolist()}


def evaluate_classifier(model, task: int, dataset) -> dict:
    """``classification_report`` of `model`'s task `task` over every sample of `dataset` ((x, y) batches)."""
    logits, labels = predict(model, task, dataset)
    return classification_report(labels, logits, model.task_specs[task - 1].num_classes)
