"""The face task selects on verification pairs of identities LFW does not hold and tests on every LFW pair."""
import logging
import types
from pathlib import Path

import numpy as np
import pytest

import archives
from paenet import tasks
from paenet.data.pairs import draw_pairs, generate_pairs, identity_images, read_pairs, write_pairs
from paenet.evaluation import lfw
from paenet.tasks.face import validation_pairs
from paenet.models import TaskSpec

LFW_PEOPLE = ["Aaron_Eckhart", "Abel_Pacheco", "Bill_Gates", "Zico", "Madonna", "Ben_Affleck"]


def make_lfw(root: Path) -> Path:
    """LFW layout, 3 images a person, a pairs.txt of 10 folds x (1 + 1) pairs."""
    for n, name in enumerate(LFW_PEOPLE):
        for i in range(1, 4):
            archives.write_image(root / name / f"{name}_{i:04d}.png", 10 * n + i, fmt="PNG")
    people = {name: [(i, i) for i in range(1, 4)] for name in LFW_PEOPLE}
    write_pairs(root / "pairs.txt", generate_pairs(people, folds=10, per_fold=1, seed=0))
    return root


def make_identities(root: Path) -> Path:
    """VGGFace2 layout: 6 identities apart from LFW, one that is LFW's Aaron Eckhart by its meta name, and
    one folder named as an LFW person."""
    for n, identity in enumerate([f"n{k:06d}" for k in range(1, 8)] + ["Zico"]):
        for i in range(3):
            archives.write_image(root / identity / f"{i + 1:04d}_01.jpg", 500 + 10 * n + i)
    (root / "identity_meta.csv").write_text("Class_ID, Name, Sample_Num, Flag, Gender\n"
                                            + "".join(f'n{k:06d}, "Person {k}", 3, 0, m\n' for k in range(1, 7))
                                            + 'n000007, "Aaron Eckhart", 3, 0, m\n')
    return root


@pytest.fixture
def reads(monkeypatch):
    """Every image path the LFW evaluation embeds, call by call; embeddings are each image's mean colour
    per quadrant (no model needed)."""
    calls = []
    original = lfw.embed_files

    def recording(paths, embed_fn, *args, **kwargs):
        calls.append({Path(p) for p in paths})
        return original(paths, embed_fn, *args, **kwargs)

    def quadrant_colours(model, task):
        return lambda images: np.asarray(images).reshape(-1, 2, 16, 2, 16, 3).mean(axis=(2, 4)).reshape(-1, 12)

    monkeypatch.setattr(lfw, "embed_files", recording)
    monkeypatch.setattr("paenet.evaluation.lfw.embedding_function", quadrant_colours)
    return calls


def test_validation_never_reads_a_test_pair_and_the_test_is_every_lfw_pair(tmp_path, reads, caplog):
    caplog.set_level(logging.INFO, logger="paenet.tasks.face")
    test_dir, val_dir = make_lfw(tmp_path / "lfw"), make_identities(tmp_path / "vggface2_test")
    context = tasks.TaskContext(str(tmp_path), image_size=32, seed=5,
                                options={"face_pairs": str(test_dir), "face_val": str(val_dir), "face_val_pairs": 1})
    data = tasks.get("face").load(context)
    assert data.train is None
    assert data.sizes == {"train": 0, "val_pairs": 20, "val_identities_left_out": 2, "test_pairs": 20,
                          "test_folds": 10}
    model = types.SimpleNamespace(image_shape=(32, 32, 3), task_specs=(TaskSpec("face", 0),))
    packer = types.SimpleNamespace(model=model, active_task=1)

    assert 0.0 <= data.validate(packer.model, packer.active_task) <= 1.0
    (validation_reads,) = reads
    lfw_images = set(test_dir.rglob("*.png"))
    assert validation_reads and all(val_dir in p.parents for p in validation_reads)
    assert not validation_reads & lfw_images
    assert not {p.parent.name for p in validation_reads} & {"n000007", "Zico"}      # LFW's people left out
    assert "2 identities also in" in caplog.text

    assert 0.0 <= data.test(packer.model, packer.active_task) <= 1.0
    pairs = read_pairs(test_dir / "pairs.txt")
    assert sorted({p.fold for p in pairs}) == list(range(10))
    assert reads[1] == {test_dir / f"{stem}.png" for p in pairs for stem in p.stems}   # every pair, all folds


def test_validation_pairs_are_seeded_balanced_and_in_ten_folds(tmp_path):
    val_dir = make_identities(tmp_path / "ids")
    pairs, shared = validation_pairs(val_dir, LFW_PEOPLE, seed=1, per_fold=1)
    assert shared == ["Zico", "n000007"]
    assert pairs == validation_pairs(val_dir, LFW_PEOPLE, seed=1, per_fold=1)[0]
    assert pairs != validation_pairs(val_dir, LFW_PEOPLE, seed=2, per_fold=1)[0]
    for fold in range(10):
        kinds = [same for a, b, same, f in pairs if f == fold]
        assert kinds == [True, False]
    assert all((a.parent == b.parent) == same and a != b for a, b, same, _ in pairs)
    assert len({(a, b) for a, b, _, _ in pairs}) == len(pairs)
    with pytest.raises(ValueError, match="too few for 10 folds x 4 pairs"):
        draw_pairs(identity_images(val_dir), 10, 4, seed=0)   # 8 identities x 3 pairs: 24 same-identity pairs


def test_without_validation_identities_the_task_warns_that_it_selects_on_lfw(tmp_path, caplog):
    test_dir = make_lfw(tmp_path / "lfw")
    data = tasks.get("face").load(tasks.TaskContext(str(tmp_path), image_size=32,
                                                    options={"face_pairs": str(test_dir)}))
    assert data.sizes == {"train": 0, "val_folds": 5, "test_folds": 5}
    assert "selection is not independent of its test" in caplog.text
