"""LFW protocol: checked against a straightforward loop-by-loop computation, then end to end on real photos."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from paenet.data.pairs import read_pairs
from paenet.evaluate import embedding_model
from paenet.evaluation.lfw import evaluate_lfw
from paenet.evaluation.verification import THRESHOLDS, evaluate_verification, flip_concat

REPO = Path(__file__).resolve().parents[1]

# Verification accuracy the FaceNet reference model must reach on celebs/ (5 people, 600 pairs). Measured
# 0.969 +- 0.020 (VAL@FAR=1e-3 0.942; 588 pairs used, 12 skipped for the one photo without a detected face).
CELEBS_ACCURACY_FLOOR = 0.93


def reference_protocol(e1, e2, same, folds, thresholds, far_target):
    """The protocol written plainly: Python loops, math.acos, one threshold at a time."""
    n, accuracies, vals = len(same), [], []
    for fold in sorted(set(folds)):
        train = [i for i in range(n) if folds[i] != fold]
        test = [i for i in range(n) if folds[i] == fold]
        rows = [e1[i] for i in train] + [e2[i] for i in train]
        mean = [sum(r[d] for r in rows) / len(rows) for d in range(len(e1[0]))]
        distance = []
        for a, b in zip(e1, e2):
            a = [x - m for x, m in zip(a, mean)]
            b = [x - m for x, m in zip(b, mean)]
            cosine = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
            distance.append(math.acos(max(-1.0, min(1.0, cosine))) / math.pi)
        best, best_accuracy = None, -1.0
        for t in thresholds:
            accuracy = sum((distance[i] < t) == same[i] for i in train) / len(train)
            if accuracy > best_accuracy:
                best, best_accuracy = t, accuracy
        accuracies.append(sum((distance[i] < best) == same[i] for i in test) / len(test))
        different = [i for i in train if not same[i]]
        chosen = thresholds[0]
        for t in thresholds:
            if sum(distance[i] < t for i in different) / len(different) <= far_target:
                chosen = t
        positives = [i for i in test if same[i]]
        vals.append(sum(distance[i] < chosen for i in positives) / len(positives))
    return accuracies, vals


def synthetic_pairs(folds=10, per_kind=6, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    same = np.tile([True] * per_kind + [False] * per_kind, folds)
    fold = np.repeat(np.arange(folds), 2 * per_kind)
    e1 = rng.normal(size=(len(same), dim)) + 3.0                # a common offset: what mean subtraction removes
    other = rng.normal(size=e1.shape) + 3.0
    e2 = np.where(same[:, None], e1 + rng.normal(scale=0.9, size=e1.shape), other)
    return e1, e2, same, fold


@pytest.mark.parametrize("far_target", [1e-3, 0.1])
def test_protocol_matches_the_straightforward_computation(far_target):
    e1, e2, same, folds = synthetic_pairs()
    result = evaluate_verification(e1, e2, same, folds, far_target=far_target)
    accuracies, vals = reference_protocol(e1.tolist(), e2.tolist(), same.tolist(), folds.tolist(),
                                          THRESHOLDS.tolist(), far_target)
    np.testing.assert_allclose(result.accuracy, accuracies, atol=1e-12)
    np.testing.assert_allclose(result.val, vals, atol=1e-12)
    summary = result.summary()
    assert summary["accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert summary["accuracy_std"] == pytest.approx(np.std(accuracies))
    assert 0.6 < summary["accuracy_mean"] < 1.0                 # neither trivial nor perfect


def test_mean_subtraction_and_flip_concat():
    e1, e2, same, folds = synthetic_pairs(seed=1)
    plain = evaluate_verification(e1, e2, same, folds)
    shifted = evaluate_verification(e1 + 5.0, e2 + 5.0, same, folds)
    np.testing.assert_allclose(plain.accuracy, shifted.accuracy)
    unsubtracted = evaluate_verification(e1, e2, same, folds, subtract_mean=False)
    assert np.mean(unsubtracted.accuracy) < np.mean(plain.accuracy)     # the offset hurts without it
    assert flip_concat(e1, e2).shape == (len(e1), 2 * e1.shape[1])
    with pytest.raises(ValueError, match="at least 2 folds"):
        evaluate_verification(e1, e2, same, np.zeros(len(same), int))


def test_facenet_on_aligned_celebs(facenet_dir, aligned_celebs):
    result = evaluate_lfw(aligned_celebs, aligned_celebs / "pairs.txt",
                          frozen_graph_embedder(facenet_dir / "20180402-114759.pb"))
    faceless = {p.rsplit(".", 1)[0] for p in (aligned_celebs / "no_face.txt").read_text().split()}
    touching = [p for p in read_pairs(aligned_celebs / "pairs.txt") if faceless & set(p.stems)]
    assert result["pairs_skipped"] == len(touching) and result["pairs_used"] == 600 - len(touching)
    assert result["folds"] == 10
    assert result["accuracy_mean"] >= CELEBS_ACCURACY_FLOOR, result
    assert 0.8 <= result["val_at_far"] <= 1.0 and result["far_mean"] <= 0.05


def frozen_graph_embedder(pb_path):
    """A test-local embedding function, independent of PAENet's FaceNet import: runs the frozen GraphDef
    itself (``input:0`` standardised images, ``phase_train:0`` False, ``embeddings:0``)."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(pb_path).read_bytes())
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    tensor = wrapped.graph.get_tensor_by_name
    run = wrapped.prune(feeds=[tensor("input:0"), tensor("phase_train:0")], fetches=tensor("embeddings:0"))
    return lambda images: run(tf.cast(images, tf.float32), tf.constant(False)).numpy()


def test_evaluate_command_prints_one_json_object(facenet_dir, aligned_celebs):
    """The command (through PAENet's FaceNet import) agrees with the test-local frozen-graph embedding."""
    pb = facenet_dir / "20180402-114759.pb"
    done = subprocess.run([sys.executable, "-m", "paenet.evaluate", "lfw", f"--images={aligned_celebs}",
                           f"--pairs={aligned_celebs / 'pairs.txt'}", f"--checkpoint={pb}"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    expected = evaluate_lfw(aligned_celebs, aligned_celebs / "pairs.txt", frozen_graph_embedder(pb))
    for key in ("accuracy_mean", "accuracy_std", "val_at_far", "pairs_used", "pairs_skipped"):
        assert printed[key] == pytest.approx(expected[key], abs=1e-6), key
    assert printed["pairs_used"] + printed["pairs_skipped"] == 600


def test_a_folder_that_is_no_model_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        embedding_model(str(tmp_path))


def test_roc_rises_over_the_threshold_grid_and_its_area_matches_a_direct_count():
    e1, e2, same, folds = synthetic_pairs(seed=3)
    roc = evaluate_verification(e1, e2, same, folds).roc()
    fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
    assert fpr[0] == tpr[0] == 0.0 and np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert tpr[-1] == 1.0 and fpr[-1] == 1.0
    # The area is the chance that a same-person pair is closer than a different-person one (per fold,
    # with the other folds' mean subtracted), averaged over the folds.
    chances = []
    for fold in np.unique(folds):
        mean = np.concatenate([e1[folds != fold], e2[folds != fold]]).mean(axis=0)
        d = np.array([math.acos(np.clip(np.dot(a - mean, b - mean) / np.linalg.norm(a - mean)
                                        / np.linalg.norm(b - mean), -1, 1)) / math.pi for a, b in zip(e1, e2)])
        test = folds == fold
        chances.append(np.mean(d[test & same][:, None] < d[test & ~same][None, :]))
    assert 0.6 < roc["auc"] == pytest.approx(np.mean(chances), abs=0.05)
