"""FaceNet's LFW verification protocol on embeddings (DESIGN §7).

For each of the k folds of ``pairs.txt`` in turn: subtract the mean embedding of the other folds' images,
measure the angular distance arccos(cosine similarity) / pi of every pair, choose on the other folds the
threshold of a fixed grid with the best accuracy (the smallest such threshold on a tie; a pair is called
"same" when its distance is below the threshold), and report that threshold's accuracy on the fold. The
result is the mean and (population) standard deviation of the k fold accuracies. VAL@FAR: on the other
folds, the largest grid threshold whose false-accept rate is at most the target (FaceNet interpolates
between grid points; the grid is fine enough that this changes little, and never exceeds the target on
the training folds); its validation rate (same-person pairs accepted) and FAR on the fold are averaged.
Embeddings come in already flip-concatenated (``flip_concat``) when the protocol's flip is wanted.
"""
from __future__ import annotations

import dataclasses

import numpy as np

THRESHOLDS = np.linspace(0.0, 1.0, 1001)  # angular distance lies in [0, 1]
FAR_TARGET = 1e-3


def flip_concat(embeddings, flipped_embeddings) -> np.ndarray:
    """[N, 2D]: each image's embedding followed by that of its horizontal flip."""
    return np.concatenate([np.asarray(embeddings), np.asarray(flipped_embeddings)], axis=1)


def angular_distance(a, b) -> np.ndarray:
    """arccos(cosine similarity) / pi of the rows of `a` and `b`, in [0, 1]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.arccos(np.clip(cosine, -1.0, 1.0)) / np.pi


@dataclasses.dataclass
class VerificationResult:
    """Per-fold results of the protocol."""

    accuracy: np.ndarray
    threshold: np.ndarray
    val: np.ndarray
    far: np.ndarray
    val_threshold: np.ndarray
    tpr: np.ndarray          # [folds, thresholds]: each fold's same-person pairs accepted at each threshold
    fpr: np.ndarray          # the same for its different-person pairs

    def summary(self) -> dict:
        return {"accuracy_mean": float(np.mean(self.accuracy)), "accuracy_std": float(np.std(self.accuracy)),
                "val_at_far": float(np.mean(self.val)), "val_std": float(np.std(self.val)),
                "far_mean": float(np.mean(self.far)), "threshold_mean": float(np.mean(self.threshold)),
                "folds": len(self.accuracy)}

    def roc(self) -> dict:
        """The ROC over the threshold grid, each rate averaged over the folds (as FaceNet's
        ``calculate_roc``), and its area."""
        fpr, tpr = self.fpr.mean(axis=0), self.tpr.mean(axis=0)
        order = np.argsort(fpr, kind="stable")
        return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": float(np.trapezoid(tpr[order], fpr[order]))}


def evaluate_verification(embeddings1, embeddings2, same, folds, thresholds=THRESHOLDS,
                          far_target: float = FAR_TARGET, subtract_mean: bool = True) -> VerificationResult:
    """The protocol above on pair embeddings ([N, D] each), `same` ([N] bool) and `folds` ([N] int)."""
    e1, e2 = np.asarray(embeddings1, np.float64), np.asarray(embeddings2, np.float64)
    same, folds, thresholds = np.asarray(same, bool), np.asarray(folds), np.asarray(thresholds, np.float64)
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, the pairs have {len(fold_ids)}")
    per_fold = {k: [] for k in ("accuracy", "threshold", "val", "far", "val_threshold", "tpr", "fpr")}
    for fold in fold_ids:
        test, train = folds == fold, folds != fold
        mean = np.concatenate([e1[train], e2[train]]).mean(axis=0) if subtract_mean else 0.0
        accepted = angular_distance(e1 - mean, e2 - mean)[None, :] < thresholds[:, None]   # [T, N]
        correct = accepted == same[None, :]
        best = int(np.argmax(correct[:, train].mean(axis=1)))
        per_fold["accuracy"].append(correct[best, test].mean())
        per_fold["threshold"].append(thresholds[best])
        train_far = accepted[:, train & ~same].mean(axis=1)
        at_far = int(np.flatnonzero(train_far <= far_target).max())
        per_fold["val"].append(accepted[at_far, test & same].mean())
        per_fold["far"].append(accepted[at_far, test & ~same].mean())
        per_fold["val_threshold"].append(thresholds[at_far])
        per_fold["tpr"].append(accepted[:, test & same].mean(axis=1))
        per_fold["fpr"].append(accepted[:, test & ~same].mean(axis=1))
    return VerificationResult(**{k: np.asarray(v) for k, v in per_fold.items()})
