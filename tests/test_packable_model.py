"""PackableModel behaviour that every network relies on."""
import keras
import numpy as np

from paenet.checkpoint import load_packing, save_packing
from paenet.models import TaskSpec, variable_key
from paenet.packing import Packer
from tiny_models import tiny_cnn


def test_deserialised_model_has_its_variables():
    """Keras marks a deserialised model built: ``build_from_config`` must create the variables."""
    model = tiny_cnn(tasks=[TaskSpec("a", 3)])
    model.build_variables()
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert copy.built
    assert sorted(variable_key(v) for v in copy.variables) == sorted(variable_key(v) for v in model.variables)


def test_packer_save_load_round_trip(tmp_path):
    packer = Packer(tiny_cnn())
    packer.start_task(TaskSpec("a", 3))
    packer.prune(0.5)
    record = packer.finish()
    save_packing(packer, tmp_path / "p")
    loaded = load_packing(tmp_path / "p")
    assert loaded.records[0].digest == record.digest
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.model(x, task=1).numpy(), packer.model(x, task=1).numpy())
