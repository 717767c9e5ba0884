"""Every TFDS builder, built offline from tiny archives laid out as the real ones, and from the real files
of ../shared/data where they exist (the FER-2013 sample csv, celebs/ and ckplus/ in LFW layout)."""
import logging
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

import archives
from data_prep.build import build
from paenet.datasets.adience import age_group, gender_label
from paenet.datasets.imdb_wiki import age_at_photo


def examples(builder, split):
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def warnings_about(caplog, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and what in r.getMessage()]


def test_vggface2(tmp_path, caplog):
    expected = archives.make_vggface2(tmp_path / "manual")
    builder = build("vggface2", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    assert builder.info.features["label"].names == expected["classes"]
    train = examples(builder, "train")
    assert len(train) == expected["examples"]
    for ex in train:
        identity = expected["classes"][ex["label"]]
        assert text(ex["file_name"]).startswith(identity + "/")
        assert text(ex["identity"]) == expected["names"][identity]
        assert ex["image"].shape == (24, 28, 3)      # the grayscale JPEG comes out with 3 channels too
    assert warnings_about(caplog, "1 unreadable images skipped: " + expected["unreadable"][0])
    assert warnings_about(caplog, "1 missing images skipped: " + expected["missing"][0])


def test_lfw_pairs_and_images(tmp_path, caplog):
    expected = archives.make_lfw(tmp_path / "manual")
    pairs = build("lfw", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    got = sorted((text(e["file_name1"]), text(e["file_name2"]), bool(e["same"]), int(e["fold"]))
                 for e in examples(pairs, "test"))
    assert len(got) == expected["pairs"]
    assert sorted((s, f) for _, _, s, f in got) == sorted(zip(expected["same"], expected["folds"]))
    assert ("Abel_Pacheco/Abel_Pacheco_0003.jpg", "Zico/Zico_0001.jpg", False, 0) in got
    assert warnings_about(caplog, "1 pairs with a missing image skipped: Zico/Zico_0001 & Zico/Zico_0003")

    images = build("lfw/images", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    assert images.info.features["label"].names == expected["people"]
    got = examples(images, "images")
    assert len(got) == expected["images"]
    assert all(text(e["file_name"]).split("/")[0] == expected["people"][e["label"]] for e in got)


@pytest.mark.parametrize("config, folder", [("aligned", "aligned"), ("faces", "faces")])
def test_adience_folds_and_label_rules(tmp_path, caplog, config, folder):
    caplog.set_level(logging.INFO, logger="paenet.datasets")
    expected = archives.make_adience(tmp_path / "manual")
    builder = build(f"adience/{config}", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    assert sorted(builder.info.splits) == [f"fold_{k}" for k in range(5)]
    for fold, labels in enumerate(expected["labels"]):
        got = sorted((int(e["age"]), int(e["gender"])) for e in examples(builder, f"fold_{fold}"))
        assert got == sorted(labels), fold
    dropped = [r.getMessage() for r in caplog.records
               if "rows dropped (no age group and no gender)" in r.getMessage()]
    assert dropped == [f"paenet_adience[fold_2]: {expected['dropped']} rows dropped (no age group and no gender)"]
    missing = expected["missing"][0]
    if folder == "faces":
        missing = missing.replace("landmark_aligned_face", "coarse_tilt_aligned_face")
    assert warnings_about(caplog, f"fold_3]: 1 missing images skipped: {missing}")


@pytest.mark.parametrize("label, group", [
    ("(0, 2)", 0), ("(4, 6)", 1), ("(8, 12)", 2), ("(15, 20)", 3), ("(25, 32)", 4), ("(38, 43)", 5),
    ("(48, 53)", 6), ("(60, 100)", 7), ("(38, 42)", -1), ("(27, 32)", -1), ("(8, 23)", -1), ("(38, 48)", -1),
    ("(25, 23)", -1), ("(25 32)", -1), ("(8, 13)", -1), ("2", -1), ("22", -1), ("35", -1), ("None", -1),
    ("", -1)])
def test_adience_age_rule_keeps_only_the_8_published_group_strings(label, group):
    assert age_group(label) == group


@pytest.mark.parametrize("text, label", [("m", 0), ("f", 1), ("u", -1), ("", -1), ("None", -1)])
def test_adience_gender_rule_keeps_only_m_and_f(text, label):
    assert gender_label(text) == label


def test_affectnet(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="paenet.datasets")
    expected = archives.make_affectnet(tmp_path / "manual")
    builder = build("affectnet", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    assert builder.info.features["label"].names == ["neutral", "happy", "sad", "surprise", "fear", "disgust",
                                                     "anger"]
    assert sorted(int(e["label"]) for e in examples(builder, "train")) == expected["train_labels"]
    validation = examples(builder, "validation")
    assert sorted(int(e["label"]) for e in validation) == expected["validation_labels"]
    assert all(e["image"].shape[-1] == 3 for e in validation)          # RGBA PNGs decode to RGB
    messages = [r.getMessage() for r in caplog.records]
    for reason, count in expected["dropped"].items():
        assert f"paenet_affectnet[train]: {count} rows dropped ({reason})" in messages
    assert warnings_about(caplog, "[train]: 1 unreadable images skipped: " + expected["unreadable"][0])
    assert warnings_about(caplog, "[train]: 2 rows cut short or with a blank field skipped: "
                          + ", ".join(expected["damaged"]))
    assert warnings_about(caplog, "[train]: 1 rows with an unknown expression code skipped: "
                          + expected["unknown_codes"][0])


def test_fotw_gender_and_imdb_wiki(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="paenet.datasets")
    expected = archives.make_fotw(tmp_path / "fotw")
    fotw = build("fotw_gender", str(tmp_path / "fotw"), str(tmp_path / "tfds"))
    assert fotw.info.features["gender"].names == ["male", "female", "other"]
    assert sorted(int(e["gender"]) for e in examples(fotw, "train")) == sorted(expected["train"])
    assert sorted(int(e["gender"]) for e in examples(fotw, "validation")) == sorted(expected["validation"])
    assert warnings_about(caplog, "rows with no image or an unknown gender skipped: " + expected["skipped"][0])

    expected = archives.make_imdb_wiki(tmp_path / "imdb")
    imdb = build("imdb_wiki", str(tmp_path / "imdb"), str(tmp_path / "tfds"))
    assert imdb.info.features["gender"].names == fotw.info.features["gender"].names[:2]
    got = {text(e["file_name"]): (int(e["gender"]), int(e["age"])) for e in examples(imdb, "train")}
    assert got == expected["kept"]
    messages = [r.getMessage() for r in caplog.records]
    for reason, count in expected["dropped"].items():
        assert f"paenet_imdb_wiki[train]: {count} rows dropped ({reason})" in messages


def test_imdb_wiki_age_assumes_the_photo_taken_mid_year():
    assert age_at_photo(archives.datenum(2000, 1, 1), 2010) == 10
    assert age_at_photo(archives.datenum(2000, 6, 30), 2010) == 10
    assert age_at_photo(archives.datenum(2000, 7, 1), 2010) == 9
    assert age_at_photo(0.0, 2010) is None and age_at_photo(float("nan"), 2010) is None


def test_fer2013_generated(tmp_path, caplog):
    expected = archives.make_fer2013(tmp_path / "manual")
    builder = build("fer2013", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    for split in ("train", "validation", "test"):
        got = examples(builder, split)
        assert sorted(int(e["label"]) for e in got) == expected[split]
        assert all(e["image"].shape == (48, 48, 1) for e in got)
    assert warnings_about(caplog, "[train]: 1 malformed rows skipped: " + expected["malformed"][0])


def test_fer2013_kaggle_icml_layout(tmp_path):
    """The other Kaggle file: columns ``emotion, Usage, pixels`` with spaces after the commas."""
    row = archives.fer_row(3, 9, "Training").split(",")
    (tmp_path / "manual").mkdir()
    csv_text = f"emotion, Usage, pixels\n{row[0]}, {row[2]}, {row[1]}\n"
    (tmp_path / "manual" / "icml_face_data.csv").write_text(csv_text)
    builder = build("fer2013", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    (example,) = examples(builder, "train")
    assert example["label"] == 3
    np.testing.assert_array_equal(example["image"].reshape(-1), np.array(row[1].split(), np.uint8))


def test_fer2013_real_sample(tmp_path, data_dir):
    """The real Kaggle rows of ../shared/data/fer2013: every image equals the PNG the fetch script wrote."""
    from PIL import Image
    (tmp_path / "manual").mkdir()
    shutil.copy(data_dir / "fer2013" / "fer2013_sample.csv", tmp_path / "manual" / "fer2013.csv")
    builder = build("fer2013", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    train = examples(builder, "train")
    assert sorted(int(e["label"]) for e in train) == [0, 0, 0, 0, 2, 2, 2]
    assert sorted(builder.info.splits) == ["train"]
    pngs = {np.asarray(Image.open(p)).tobytes() for p in (data_dir / "fer2013" / "images").rglob("*.png")}
    assert len(pngs) == 3 and {e["image"][..., 0].tobytes() for e in train} == pngs


def test_utkface(tmp_path, caplog):
    expected = archives.make_utkface(tmp_path / "manual")
    builder = build("utkface", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    got = {text(e["file_name"]): (int(e["age"]), int(e["gender"]), int(e["race"]))
           for e in examples(builder, "train")}
    assert got == expected["labels"]
    malformed = ", ".join(expected["malformed"])
    assert warnings_about(caplog, "2 files whose name carries no labels skipped: " + malformed)
    assert warnings_about(caplog, "1 unreadable images skipped: " + expected["unreadable"][0])


@pytest.mark.parametrize("dataset, images, pairs, people", [("celebs", 118, 600, 5), ("ckplus", 98, 300, 10)])
def test_lfw_builder_on_real_sets(tmp_path, data_dir, dataset, images, pairs, people):
    """celebs/ and ckplus/ are in LFW layout with a pairs.txt: every pair and every person image is read
    (ckplus/extra/ is not in the layout and is left out)."""
    built = build("lfw/images", str(data_dir / dataset), str(tmp_path))
    assert built.info.splits["images"].num_examples == images
    assert len(built.info.features["label"].names) == people
    built = build("lfw", str(data_dir / dataset), str(tmp_path))
    got = examples(built, "test")
    assert len(got) == pairs
    assert sum(bool(e["same"]) for e in got) == pairs // 2
    assert all(e["image1"].shape[-1] == 3 and e["image2"].shape[-1] == 3 for e in got)


def test_lfw_builder_reads_the_aligned_copy(tmp_path, data_dir, aligned_celebs, caplog):
    """After alignment the images are .png and one photo has no face: its pairs are skipped, named."""
    built = build("lfw", str(aligned_celebs), str(tmp_path))
    got = examples(built, "test")
    assert all(text(e["file_name1"]).endswith(".png") for e in got)
    (faceless,) = (aligned_celebs / "no_face.txt").read_text().split()
    stem = faceless.rsplit(".", 1)[0]
    skipped = [p for p in (data_dir / "celebs" / "pairs.txt").read_text().splitlines()[1:]
               if stem in "/".join(_pair_stems(p))]
    assert len(got) == 600 - len(skipped) and skipped
    assert warnings_about(caplog, f"{len(skipped)} pairs with a missing image skipped")


def _pair_stems(line: str) -> list[str]:
    f = line.split("\t")
    names = [(f[0], f[1]), (f[0], f[2])] if len(f) == 3 else [(f[0], f[1]), (f[2], f[3])]
    return [f"{n}/{n}_{int(i):04d}" for n, i in names]


def test_missing_manual_files_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssertionError, match="fold_0_data.txt ... fold_4_data.txt"):   # TFDS quotes our text
        build("adience", str(tmp_path / "empty"), str(tmp_path / "tfds"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "fold_0_data.txt").write_text(archives.ADIENCE_HEADER + "\n")
    with pytest.raises(FileNotFoundError, match="none of fold_1_data.txt was found"):
        build("adience", str(tmp_path / "other"), str(tmp_path / "tfds"))
    with pytest.raises(ValueError, match="unknown data set 'celeba'"):
        build("celeba", str(tmp_path / "empty"))
