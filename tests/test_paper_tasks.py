"""The paper's tasks read the TFDS builders with honest splits (test never used for selection) and train."""
import numpy as np
import pytest

import tensorflow_datasets as tfds

import archives
from data_prep.build import build
from paenet import tasks
from paenet.data.splits import group_split
from paenet.models import TaskSpec
from paenet.packing import Packer
from paenet.tasks.paper import adience_sources
from paenet.training import Trainer, top1_accuracy
from tiny_models import one_block_cnn


def _pack_briefly(definition, data):
    packer = Packer(one_block_cnn(32), "adam")
    packer.start_task(TaskSpec(definition.name, definition.num_classes))
    trainer = Trainer(packer, data.loss, progress=False)
    trainer.train(data.train, 3)
    return packer


def _subjects(source, subject_of) -> list[str]:
    return [subject_of[item] for item, _ in tfds.as_numpy(source.dataset)]


@pytest.mark.parametrize("name, label", [("age", 0), ("gender", 1)])
@pytest.mark.parametrize("fold", [0, 3])
def test_adience_tasks_train_on_four_folds_and_validate_on_held_out_subjects(tmp_path, name, label, fold):
    expected = archives.make_adience(tmp_path / "manual")
    builder = build("adience", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    every_fold = "+".join(f"fold_{k}" for k in range(5))
    subject_of = {ex["image"]: ex["user_id"].decode() for ex in tfds.as_numpy(
        builder.as_dataset(split=every_fold, decoders={"image": tfds.decode.SkipDecoding()}))}
    in_fold = {subject: k for k, rows in enumerate(archives.ADIENCE_ROWS) for subject, *_ in rows}

    train, val, test = adience_sources(builder, fold, name, seed=0)
    train_subjects, val_subjects = _subjects(train, subject_of), _subjects(val, subject_of)
    assert val_subjects and train_subjects and not set(train_subjects) & set(val_subjects)
    assert {in_fold[s] for s in train_subjects + val_subjects} == set(range(5)) - {fold}
    assert {in_fold[s] for s in _subjects(test, subject_of)} == {fold}
    assert _subjects(adience_sources(builder, fold, name, seed=0)[1], subject_of) == val_subjects

    data = tasks.get(name).load(tasks.TaskContext(str(tmp_path / "tfds"), image_size=32, batch_size=2, fold=fold))
    known = [sum(1 for row in rows if row[label] >= 0) for rows in expected["labels"]]
    assert data.sizes == {"test": known[fold], "val": len(val_subjects),
                          "train": sum(known) - known[fold] - len(val_subjects)}
    if fold == 0:
        packer = _pack_briefly(tasks.get(name), data)
        for split, evaluate in (("val", data.validate), ("test", data.test)):
            assert 0.0 <= evaluate(packer.model, packer.active_task) <= 1.0
            # the labelled split a model outside PAENet is judged on (the int8 export) is the one evaluated
            assert evaluate(packer.model, packer.active_task) == top1_accuracy(packer.model, packer.active_task,
                                                                               data.held_out[split])
            assert sum(len(y) for _, y in data.held_out[split]) == data.sizes[split]


def test_subject_split_holds_about_the_fraction_and_no_subject_twice():
    subjects = np.repeat([f"s{k}" for k in range(40)], np.arange(1, 41))       # 820 images, 1..40 per subject
    train, val = group_split(subjects, 0.1, seed=3)
    assert not set(subjects[train]) & set(subjects[val])
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(subjects)))
    assert 82 <= len(val) < 82 + 40                 # reaches 10%, overshooting by less than one subject
    assert np.array_equal(group_split(subjects, 0.1, seed=3)[1], val)
    assert not np.array_equal(group_split(subjects, 0.1, seed=4)[1], val)
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_split(["a", "a"], 0.1, seed=0)


def test_expression_weights_classes_and_keeps_official_validation_as_test(tmp_path):
    archives.make_affectnet(tmp_path / "manual")
    build("affectnet", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    data = tasks.get("expression").load(tasks.TaskContext(str(tmp_path / "tfds"), image_size=32, batch_size=2))
    assert data.sizes["test"] == 7 and data.sizes["train"] + data.sizes["val"] == 10
    packer = _pack_briefly(tasks.get("expression"), data)
    assert 0.0 <= data.test(packer.model, packer.active_task) <= 1.0
    logits = np.zeros((2, 7), np.float32)
    assert float(data.loss(np.array([0, 6]), logits)) > 0


def test_fotw_gender_trains_on_fotw_and_imdb_wiki(tmp_path):
    fotw = archives.make_fotw(tmp_path / "fotw")
    imdb = archives.make_imdb_wiki(tmp_path / "imdb")
    build("fotw_gender", str(tmp_path / "fotw"), str(tmp_path / "tfds"))
    build("imdb_wiki", str(tmp_path / "imdb"), str(tmp_path / "tfds"))
    data = tasks.get("fotw_gender").load(tasks.TaskContext(str(tmp_path / "tfds"), image_size=32, batch_size=2))
    assert data.sizes["val"] == len(fotw["validation"]) and data.test is None and set(data.held_out) == {"val"}
    assert data.sizes["train"] == len(fotw["train"]) + len(imdb["kept"])


def test_an_unprepared_data_set_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data set 'adience' is not prepared"):
        tasks.get("age").load(tasks.TaskContext(str(tmp_path), image_size=32))
