"""LFW evaluation end to end: aligned images + ``pairs.txt`` (or any list of image pairs in folds) + an
embedding function -> the protocol's numbers.

The embedding function takes a float32 batch [N, 160, 160, 3] already given fixed standardisation and
returns [N, D] embeddings (a FaceNet frozen graph, a PAENet face task, ...). Each image is embedded once,
with its horizontal flip (``flip=True``); pairs with a missing image are skipped and counted.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from paenet.data.pairs import read_pairs, resolve_pairs
from paenet.data.pipeline import IMAGE_SIZE, decode, evaluation_dataset, files
from paenet.evaluation.verification import evaluate_verification, flip_concat
from paenet.fileio import error_line


def embedding_function(model, task: int):
    """``f(images) -> embeddings`` (NumPy) of task `task` of `model`, for standardised images: the one
    embedding forward pass that the face task, ``paenet.evaluate`` and ``paenet.embed`` share."""
    from paenet.training import inference_function
    forward = inference_function(model, task, outputs="embeddings")
    return lambda images: forward(tf.cast(images, tf.float32)).numpy()


def embed_files(paths, embed_fn, batch_size: int = 100, image_size: int = IMAGE_SIZE,
                flip: bool = True, progress: str | None = None) -> np.ndarray:
    """Embeddings [N, D] (or [N, 2D], image then flip, with `flip`) of the aligned images at `paths`;
    `progress` names a progress bar over the batches (None: no bar). ValueError naming the first image
    that cannot be decoded."""
    source = files(paths, np.zeros(len(paths), np.int64))
    out = []
    batches = evaluation_dataset(source, batch_size, image_size, source_size=image_size)
    try:
        for images, _ in tqdm(batches, desc=progress, total=-(-len(paths) // batch_size), unit="batch",
                              disable=progress is None, leave=False):
            embedded = np.asarray(embed_fn(images))
            if flip:
                embedded = flip_concat(embedded, np.asarray(embed_fn(tf.image.flip_left_right(images))))
            out.append(embedded)
    except tf.errors.InvalidArgumentError as e:     # the pipeline's decode does not say which file
        raise ValueError(f"{_first_unreadable(paths)}: not a readable image ({error_line(e)})") from None
    return np.concatenate(out)


def _first_unreadable(paths) -> str:
    for path in paths:
        try:
            decode(tf.io.read_file(str(path)))
        except tf.errors.InvalidArgumentError:
            return str(path)
    return "one of the images"


def evaluate_lfw(image_dir, pairs_file, embed_fn, batch_size: int = 100, image_size: int = IMAGE_SIZE,
                 flip: bool = True, folds=None, roc: bool = False, progress: str | None = None,
                 **protocol) -> dict:
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
    return evaluate_image_pairs([(first, second, p.same, p.fold) for p, first, second in found], embed_fn,
                                batch_size, image_size, flip, roc, skipped=len(missing), progress=progress,
                                **protocol)


def evaluate_image_pairs(pairs, embed_fn, batch_size: int = 100, image_size: int = IMAGE_SIZE,
                         flip: bool = True, roc: bool = False, skipped: int = 0, progress: str | None = None,
                         **protocol) -> dict:
    """The verification protocol on `pairs`, (first image path, second image path, same, fold) each, every
    image embedded once; the dict of ``evaluate_lfw`` (``pairs_skipped`` = `skipped`; `progress`: the
    name of a progress bar over the embedding, None: none)."""
    paths = sorted({p for first, second, _, _ in pairs for p in (first, second)})
    index = {p: i for i, p in enumerate(paths)}
    embeddings = embed_files(paths, embed_fn, batch_size, image_size, flip, progress)
    first = embeddings[[index[f] for f, _, _, _ in pairs]]
    second = embeddings[[index[s] for _, s, _, _ in pairs]]
    result = evaluate_verification(first, second, [same for _, _, same, _ in pairs],
                                   [fold for _, _, _, fold in pairs], **protocol)
    summary = {**result.summary(), "pairs_used": len(pairs), "pairs_skipped": skipped}
    return {**summary, "roc": result.roc()} if roc else summary
