"""Adience's data rules on fold files with the published lists' structure (subjects that label only age,
only gender, or both): age and gender validate on the same subjects, chosen once per seed and fold from
every row; a row cut short is warned about; an unreadable image is named by the LFW evaluation."""
import logging

import numpy as np
import pytest
import tensorflow_datasets as tfds

import archives
from data_prep.build import build
from paenet.evaluation.lfw import evaluate_image_pairs
from paenet.tasks.paper import adience_sources, adience_validation_users

# Per subject kind, the (age, gender) texts of its rows: the published lists hold subjects whose rows
# carry only an age group (gender "u"), only a gender (an age outside the 8 group strings), or both.
KINDS = {"age only": [("(25, 32)", "u"), ("(8, 12)", "u"), ("(0, 2)", "")],
         "gender only": [("(27, 32)", "f"), ("35", "f"), ("None", "m")],
         "both": [("(38, 43)", "m"), ("(15, 20)", "m"), ("(60, 100)", "f")]}
SUBJECTS_PER_KIND = 2       # per fold


def _make_folds(root, cut_short=None):
    """Five fold files, every subject with 3 rows, each row its own image; `cut_short` (fold, row) ends
    that row after its age."""
    for fold in range(5):
        lines, n = [archives.ADIENCE_HEADER], 0
        for kind, rows in KINDS.items():
            for s in range(SUBJECTS_PER_KIND):
                user = f"{fold}{s}{kind[0]}@N0{fold}"
                for age, gender in rows:
                    image = f"{fold}_{n}.jpg"
                    fields = [user, image, str(n), age, gender, "1", "2", "3", "4", "0", "0", "35"]
                    if (fold, n) == cut_short:
                        fields = fields[:4]
                    lines.append("\t".join(fields))
                    archives.write_image(root / "aligned" / user / f"landmark_aligned_face.{n}.{image}",
                                         1000 * fold + n)
                    n += 1
        (root / f"fold_{fold}_data.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def adience(tmp_path_factory):
    root = tmp_path_factory.mktemp("adience")
    _make_folds(root / "manual")
    return build("adience/aligned", str(root / "manual"), str(root / "tfds"))


def _images(source) -> set[bytes]:
    return {bytes(image) for image, _ in tfds.as_numpy(source.dataset)}


@pytest.mark.parametrize("test_fold", [0, 3])
def test_age_and_gender_validate_on_the_same_subjects_chosen_from_every_row(adience, test_fold):
    for seed in range(6):
        age_train, age_val, _ = adience_sources(adience, test_fold, "age", seed)
        gender_train, gender_val, _ = adience_sources(adience, test_fold, "gender", seed)
        assert not _images(age_train) & _images(gender_val), seed
        assert not _images(gender_train) & _images(age_val), seed
        users = adience_validation_users(adience, test_fold, seed)
        kinds = {u.decode()[2] for u in users}
        assert users and kinds <= {"a", "g", "b"}
    # Over the seeds, every kind of subject validates somewhere: the choice reads every row.
    chosen = {u.decode()[2] for seed in range(12) for u in adience_validation_users(adience, 0, seed)}
    assert chosen == {"a", "g", "b"}


def test_a_row_cut_short_is_skipped_and_named(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="paenet.datasets")
    _make_folds(tmp_path / "manual", cut_short=(1, 4))
    builder = build("adience/aligned", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "paenet_adience[fold_1]: 1 rows cut short skipped: fold_1_data.txt line 6" in warnings
    assert builder.info.splits["fold_1"].num_examples == builder.info.splits["fold_0"].num_examples - 1


def test_the_lfw_evaluation_names_an_unreadable_image(tmp_path):
    good = archives.write_image(tmp_path / "a.jpg", 1)
    bad = tmp_path / "b.jpg"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match=f"{bad}: not a readable image"):
        evaluate_image_pairs([(str(good), str(bad), True, 0)], lambda x: np.zeros((len(x), 4), np.float32),
                             image_size=16)
