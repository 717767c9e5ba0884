"""Cross-validation, top-1 and confusion, continual-learning metrics and the model-size report."""
import json
import os

import keras
import numpy as np
import pytest

import archives
from data_prep.build import build
from paenet.checkpoint import save_packing
from paenet.data import real_images
from paenet.data.arrays import array_dataset
from paenet.data.pipeline import class_counts, tfds_split
from paenet.evaluation.classification import classification_report, confusion_matrix, evaluate_classifier
from paenet.evaluation.continual import AccuracyMatrix
from paenet.evaluation.cross_validation import cross_validate, fold_splits, mean_std
from paenet.evaluation.model_size import KERNEL_BYTES, MB, bytes_on_disk, paper_accounting
from paenet.models import SmallCNN, TaskSpec, variable_key
from paenet.packing import Packer
from paenet.training import Trainer
from tiny_models import one_block_cnn


def test_fold_splits_and_summary():
    assert fold_splits(0) == ("fold_1+fold_2+fold_3+fold_4", "fold_0")
    assert fold_splits(3) == ("fold_0+fold_1+fold_2+fold_4", "fold_3")
    with pytest.raises(ValueError):
        fold_splits(5)
    scores = [0.5, 0.6, 0.7, 0.8, 0.95]
    summary = cross_validate(lambda k: {"accuracy": scores[k], "samples": 10 + k})
    assert summary["accuracy_mean"] == pytest.approx(0.71)
    assert summary["accuracy_std"] == pytest.approx(np.std(scores))
    assert summary["samples_mean"] == 12 and [f["accuracy"] for f in summary["folds"]] == scores
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)


def test_adience_cross_validation_covers_every_sample_once(tmp_path):
    """On the generated Adience folds: each test fold is disjoint from its training folds, and a majority-
    class predictor's accuracy, fold by fold, equals the count made by hand."""
    expected = archives.make_adience(tmp_path / "manual")
    builder = build("adience", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    ages = [[a for a, _ in fold if a >= 0] for fold in expected["labels"]]

    def run_fold(k):
        train, test = fold_splits(k)
        majority = int(np.argmax(class_counts(tfds_split(builder, train, "age"), 8)))
        labels = np.array([int(y) for _, y in tfds_split(builder, test, "age").dataset])
        return {"accuracy": float(np.mean(labels == majority)), "samples": len(labels)}

    summary = cross_validate(run_fold)
    assert [f["samples"] for f in summary["folds"]] == [len(a) for a in ages]
    by_hand = []
    for k, fold in enumerate(ages):
        rest = [a for j, other in enumerate(ages) if j != k for a in other]
        majority = int(np.argmax(np.bincount(rest, minlength=8)))
        by_hand.append(np.mean(np.asarray(fold) == majority))
    assert summary["accuracy_mean"] == pytest.approx(np.mean(by_hand))


def test_confusion_and_top1_over_every_sample():
    labels = [0, 0, 1, 2, 2, 2]
    logits = np.eye(3)[[0, 1, 1, 2, 0, 2]]
    np.testing.assert_array_equal(confusion_matrix(labels, np.argmax(logits, 1), 3),
                                  [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    report = classification_report(labels, logits, 4)               # class 3 has no sample
    assert report["top1"] == pytest.approx(4 / 6) and report["samples"] == 6
    assert report["per_class_accuracy"][:3] == pytest.approx([0.5, 1.0, 2 / 3])
    assert np.isnan(report["per_class_accuracy"][3])


def test_evaluate_classifier_keeps_the_short_last_batch():
    model = one_block_cnn(tasks=[TaskSpec("t", 3)])
    model.build_variables()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 16, 16, 3)).astype(np.uint8)
    labels = rng.integers(0, 3, 10)
    report = evaluate_classifier(model, 1, array_dataset(images, labels, batch_size=4))
    logits = model((images.astype(np.float32) - 127.5) / 128.0, task=1, training=False).numpy()
    assert report["samples"] == 10
    assert report["top1"] == pytest.approx(np.mean(np.argmax(logits, 1) == labels))


def test_accuracy_matrix_metrics():
    matrix = AccuracyMatrix(["face", "age", "gender"])
    for (after, task), value in {(1, 1): 0.9, (2, 1): 0.85, (2, 2): 0.8, (3, 1): 0.8, (3, 2): 0.75,
                                 (3, 3): 0.7}.items():
        matrix.record(after, task, value)
    assert matrix.backward_transfer() == pytest.approx(((0.8 - 0.9) + (0.75 - 0.8)) / 2)
    assert matrix.forgetting() == pytest.approx(((0.9 - 0.8) + (0.8 - 0.75)) / 2)
    assert matrix.forward_transfer([0.88, 0.82, 0.65]) == pytest.approx((0.02 - 0.02 + 0.05) / 3)
    assert json.loads(json.dumps(matrix.to_dict()))["accuracy"][0] == [0.9, None, None]
    with pytest.raises(ValueError, match="R.j - 1, j. of every task"):
        matrix.gem_forward_transfer([0.1, 0.2, 0.3])
    matrix.record_before(2, 0.4)
    matrix.record_before(3, 0.25)
    assert matrix.gem_forward_transfer([0.5, 0.3, 0.35]) == pytest.approx(((0.4 - 0.3) + (0.25 - 0.35)) / 2 + 0.0)
    assert matrix.gem_forward_transfer([0.5, 0.2, 0.2]) == pytest.approx((0.2 + 0.05) / 2)
    with pytest.raises(ValueError, match="task .3. <= after .2."):
        matrix.record(2, 3, 0.5)
    incomplete = AccuracyMatrix(["a", "b"])
    incomplete.record(1, 1, 0.5)
    with pytest.raises(ValueError, match=r"missing: \[\(2, 1\), \(2, 2\)\]"):
        incomplete.backward_transfer()


@pytest.fixture(scope="module")
def packed(data_dir):
    """Two tasks packed into a small CNN on real images: face/non-face (pruned to half), then CK+ identity;
    accuracies recorded after each task."""
    keras.utils.set_random_seed(0)
    faces, people = real_images.face_nonface(data_dir, 24), real_images.ckplus_identity(data_dir, 24)
    packer = Packer(SmallCNN(widths=(8, 16), dense_units=16, input_shape=(24, 24, 3)),
                    keras.optimizers.Adam(3e-3))
    matrix = AccuracyMatrix(["face", "identity"])
    sets = [(faces, array_dataset(faces.images, faces.labels, 32, training=True)),
            (people, array_dataset(people.images, people.labels, 32, training=True))]
    evaluation = [array_dataset(s.images, s.labels, 64) for s, _ in sets]
    for task, (spec_data, train) in enumerate(sets, start=1):
        packer.start_task(TaskSpec(["face", "identity"][task - 1], spec_data.num_classes))
        trainer = Trainer(packer, progress=False)
        trainer.train(train, steps=30)
        if task == 1:
            trainer.prune_rounds(train, targets=[0.5], steps_per_round=10, prune_steps=5, frequency=5)
        packer.finish()
        for seen in range(1, task + 1):
            matrix.record(task, seen, trainer.evaluate(evaluation[seen - 1], task=seen))
    return packer, matrix


def test_packing_forgets_nothing(packed):
    _, matrix = packed
    assert matrix.values[1, 0] == matrix.values[0, 0] > 0.5
    assert matrix.backward_transfer() == 0.0 and matrix.forgetting() == 0.0


def test_paper_accounting_against_the_variables(packed, tmp_path):
    packer, _ = packed
    model, records = packer.model, packer.records
    rows = paper_accounting(model, records)
    kernels = {variable_key(l.kernel): l for l in model.masked_layers()}
    total_kernel = sum(int(np.prod(l.kernel.shape)) for l in kernels.values())
    modules = []
    for task, row in enumerate(rows, start=1):
        owned = sum(int(np.sum(l.mask.numpy() == task)) for l in kernels.values())
        specific = sum(int(np.prod(v.shape)) * 4 for v in model.variables
                       if variable_key(v).rsplit("/", 1)[-1].endswith(f"_t{task}"))
        modules.append(owned * 5 + specific)
        assert (row["owned_weights"], row["specific_bytes"]) == (owned, specific)
        assert row["module_bytes"] == modules[-1]
        assert row["cumulative_bytes"] == sum(modules) == row["inference_bytes"]       # cumulative sharing
        assert row["separate_bytes"] == task * total_kernel * KERNEL_BYTES + sum(
            r["specific_bytes"] for r in rows[:task])
    face, identity = rows
    assert face["pruned_fraction"] == pytest.approx(0.5, abs=0.01)       # the original wrote 0 for it
    assert identity["pruned_fraction"] == 0.0
    assert face["owned_weights"] + identity["owned_weights"] == total_kernel

    save_packing(packer, tmp_path / "packed")
    saved = tmp_path / "packed"
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(saved) for f in names)
    assert bytes_on_disk(saved) == on_disk > rows[-1]["cumulative_bytes"] // 2
    assert bytes_on_disk(saved / "model.json", saved / "state.json") == sum(
        (saved / name).stat().st_size for name in ("model.json", "state.json"))
    with pytest.raises(FileNotFoundError):
        bytes_on_disk(tmp_path / "nothing")


def test_megabytes_are_mebibytes_as_in_the_paper():
    """FaceNet's InceptionResnetV1 variables (../shared/facenet_reference/variables.json) at 4 B each are
    the paper's 89.6 MB only in units of 2^20 bytes."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "facenet_reference", "variables.json")
    with open(path) as f:
        variables = json.load(f)["variables"]
    values = sum(int(np.prod(v["shape"])) for v in variables if v["name"].startswith("InceptionResnetV1/"))
    assert round(values * KERNEL_BYTES / MB, 1) == 89.6
