"""LFW evaluation end to end: aligned images + ``pairs.txt`` + an embedding function -> the protocol's numbers.

The embedding function takes a float32 batch [N, 160, 160, 3] already given fixed standardisation and
returns [N, D] embeddings (a FaceNet frozen graph, a PAENet face task, ...). Each image is embedded once,
with its horizontal flip (``flip=True``); pairs with a missing image are skipped and counted.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from paenet.data.pairs import read_pairs, resolve_pairs
from paenet.data.pipeline import IMAGE_SIZE, evaluation_dataset, files
from paenet.evaluation.verification import evaluate_verification, flip_concat


def embed_files(paths, embed_fn, batch_size: int = 100, image_size: int = IMAGE_SIZE,
                flip: bool = True) -> np.ndarray:
    """Embeddings [N, D] (or [N, 2D], image then flip, with `flip`) of the aligned images at `paths`."""
    source = files(paths, np.zeros(len(paths), np.int64))
    out = []
    for images, _ in evaluation_dataset(source, batch_size, image_size, source_size=image_size):
        embedded = np.asarray(embed_fn(images))
        if flip:
            embedded = flip_concat(embedded, np.asarray(embed_fn(tf.image.flip_left_right(images))))
        out.append(embedded)
    return np.concatenate(out)


def evaluate_lfw(image_dir, pairs_file, embed_fn, batch_size: int = 100, image_size: int = IMAGE_SIZE,
                 flip: bool = True, folds=None, roc: bool = False, **protocol) -> dict:
    """The verification protocol on the pairs of `pairs_file` over the images of `image_dir`: a dict with
    ``accuracy_mean``, ``accuracy_std``, ``val_at_far`` (and ``val_std``, ``far_mean``, ...),
    ``pairs_used`` and ``pairs_skipped``. `folds` (0-based fold numbers) keeps only those folds' pairs
    (cross-validated among themselves); `roc` adds the ROC (``roc``: fpr, tpr, auc); `protocol` goes to
    ``evaluate_verification``."""
    pairs = read_pairs(pairs_file)
    if folds is not None:
        pairs = [p for p in pairs if p.fold in set(folds)]
    found, missing = resolve_pairs(pairs, image_dir)
    if not found:
        raise ValueError(f"{image_dir}: none of the images of {pairs_file} was found")
    paths = sorted({p for _, first, second in found for p in (first, second)})
    index = {p: i for i, p in enumerate(paths)}
    embeddings = embed_files(paths, embed_fn, batch_size, image_size, flip)
    first = embeddings[[index[f] for _, f, _ in found]]
    second = embeddings[[index[s] for _, _, s in found]]
    result = evaluate_verification(first, second, [p.same for p, _, _ in found], [p.fold for p, _, _ in found],
                                   **protocol)
    summary = {**result.summary(), "pairs_used": len(found), "pairs_skipped": len(missing)}
    return {**summary, "roc": result.roc()} if roc else summary
