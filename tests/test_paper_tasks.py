"""The paper's tasks read the TFDS builders with honest splits (test never used for selection) and train."""
import numpy as np
import pytest

import archives
from data_prep.build import build
from paenet import tasks
from paenet.models import SmallCNN, TaskSpec
from paenet.packing import Packer


def _pack_briefly(definition, data):
    packer = Packer(SmallCNN(widths=(4,), dense_units=4, input_shape=(32, 32, 3)), "adam", progress=False)
    packer.start_task(TaskSpec(definition.name, definition.num_classes), data.loss)
    packer.train(data.train, 3)
    return packer


@pytest.mark.parametrize("name, label", [("age", 0), ("gender", 1)])
@pytest.mark.parametrize("fold", [0, 3])
def test_adience_tasks_use_test_fold_k_and_validation_fold_k_plus_1(tmp_path, name, label, fold):
    expected = archives.make_adience(tmp_path / "manual")
    build("adience", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    definition = tasks.get(name)
    data = definition.load(tasks.TaskContext(str(tmp_path / "tfds"), image_size=32, batch_size=2, fold=fold))
    known = [sum(1 for row in rows if row[label] >= 0) for rows in expected["labels"]]
    assert data.sizes == {"test": known[fold], "val": known[(fold + 1) % 5],
                          "train": sum(known) - known[fold] - known[(fold + 1) % 5]}
    packer = _pack_briefly(definition, data)
    for evaluate in (data.validate, data.test):
        assert 0.0 <= evaluate(packer) <= 1.0


def test_expression_weights_classes_and_keeps_official_validation_as_test(tmp_path):
    archives.make_affectnet(tmp_path / "manual")
    build("affectnet", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    data = tasks.get("expression").load(tasks.TaskContext(str(tmp_path / "tfds"), image_size=32, batch_size=2))
    assert data.sizes["test"] == 7 and data.sizes["train"] + data.sizes["val"] == 10
    packer = _pack_briefly(tasks.get("expression"), data)
    assert 0.0 <= data.test(packer) <= 1.0
    logits = np.zeros((2, 7), np.float32)
    assert float(data.loss(np.array([0, 6]), logits)) > 0


def test_fotw_gender_trains_on_fotw_and_imdb_wiki(tmp_path):
    fotw = archives.make_fotw(tmp_path / "fotw")
    imdb = archives.make_imdb_wiki(tmp_path / "imdb")
    build("fotw_gender", str(tmp_path / "fotw"), str(tmp_path / "tfds"))
    build("imdb_wiki", str(tmp_path / "imdb"), str(tmp_path / "tfds"))
    data = tasks.get("fotw_gender").load(tasks.TaskContext(str(tmp_path / "tfds"), image_size=32, batch_size=2))
    assert data.sizes["val"] == len(fotw["validation"]) and data.test is None
    assert data.sizes["train"] == len(fotw["train"]) + len(imdb["kept"])


def test_an_unprepared_data_set_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data set 'adience' is not prepared"):
        tasks.get("age").load(tasks.TaskContext(str(tmp_path), image_size=32))
