"""Tiny copies of the face data sets' archives, laid out as the real ones (names, columns, quirks).

Each ``make_*`` writes one under a folder and returns what a test should find in it. Images are small
smooth RGB pictures; some are deliberately grayscale, RGBA, a PNG named .jpg, truncated or not an image.
"""
from __future__ import annotations

import datetime
import io
from pathlib import Path

import numpy as np
from PIL import Image


def picture(seed: int, size=(28, 24), mode: str = "RGB") -> Image.Image:
    """A smooth random picture (upsampled noise) in PIL `mode`."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.BICUBIC).convert(mode)


def write_image(path: Path, seed: int, mode: str = "RGB", fmt: str = "JPEG", size=(28, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture(seed, size, mode).save(path, format=fmt)
    return path


def write_truncated_jpeg(path: Path, seed: int) -> Path:
    """The first half of a JPEG: a header that opens, data that does not decode."""
    buffer = io.BytesIO()
    picture(seed, (64, 64)).save(buffer, format="JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def write_not_an_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"<html>404 Not Found</html>\n")
    return path


def make_vggface2(root: Path) -> dict:
    train = root / "train"
    write_image(train / "n000002" / "0001_01.jpg", 1)
    write_image(train / "n000002" / "0002_01.jpg", 2)
    write_image(train / "n000003" / "0001_01.jpg", 3, mode="L")            # grayscale JPEG
    write_truncated_jpeg(train / "n000003" / "0002_02.jpg", 4)
    write_image(train / "n000005" / "0001_01.jpg", 5)
    listed = ["n000002/0001_01.jpg", "n000002/0002_01.jpg", "n000003/0001_01.jpg", "n000003/0002_02.jpg",
              "n000005/0001_01.jpg", "n000005/0009_01.jpg"]                # the last one is missing
    (root / "train_list.txt").write_text("\n".join(listed) + "\n")
    (root / "identity_meta.csv").write_text(
        "Class_ID, Name, Sample_Num, Flag, Gender\n"
        'n000001, "14th_Dalai_Lama",424,0, m\n'
        'n000002, "A_Fine_Frenzy",315,1, f,\n'
        'n000003, "A._A._Gill",205,1, m,\n'
        'n000005, "Bialik, Mayim",300,1, f\n')
    return {"classes": ["n000002", "n000003", "n000005"], "examples": 4, "unreadable": ["n000003/0002_02.jpg"],
            "missing": ["n000005/0009_01.jpg"],
            "names": {"n000002": "A_Fine_Frenzy", "n000003": "A._A._Gill", "n000005": "Bialik, Mayim"}}


def make_lfw(root: Path) -> dict:
    people = {"Aaron_Eckhart": 1, "Abel_Pacheco": 3, "Zico": 2}
    for n, (name, count) in enumerate(people.items()):
        for i in range(1, count + 1):
            write_image(root / "lfw" / name / f"{name}_{i:04d}.jpg", 10 * n + i)
    (root / "lfw" / "Zico" / "Thumbs.db").write_bytes(b"\0" * 8)             # not in the layout: ignored
    (root / "pairs.txt").write_text(
        "2\t2\n"
        "Abel_Pacheco\t1\t2\n" "Zico\t1\t2\n"
        "Aaron_Eckhart\t1\tZico\t2\n" "Abel_Pacheco\t3\tZico\t1\n"
        "Abel_Pacheco\t1\t3\n" "Zico\t1\t3\n"                                  # Zico_0003 does not exist
        "Aaron_Eckhart\t1\tAbel_Pacheco\t2\n" "Zico\t2\tAbel_Pacheco\t1\n")
    return {"people": sorted(people), "images": 6, "pairs": 7, "missing_pairs": 1,
            "same": [True, True, False, False, True, False, False], "folds": [0, 0, 0, 0, 1, 1, 1]}


ADIENCE_HEADER = ("user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\tfiducial_yaw_angle"
                  "\tfiducial_score")

# Per fold: (user_id, original_image, face_id, age, gender); ages and genders cover the files' quirks
# (near-miss group strings, single ages, None, "(25, 23)", "u" and blank genders); two subjects per fold.
ADIENCE_ROWS = [
    [("30601258@N03", "10399646885_67c7d20df9_o.jpg", 1, "(25, 32)", "f"),
     ("30601258@N03", "10424815813_e94629b1ec_o.jpg", 2, "(8, 12)", "m"),
     ("10280355@N07", "10524078416_9fd6e4d4a6_o.jpg", 31, "(0, 2)", "u"),
     ("10280355@N07", "10523958055_d2e1bb8d49_o.jpg", 32, "(25, 23)", "m")],
    [("7153718@N04", "11597889523_ec1e1d9a0c_o.jpg", 1296, "(38, 42)", "m"),
     ("7153718@N04", "11598013005_240c4d0ae4_o.jpg", 1297, "(8, 23)", "f"),
     ("7153718@N04", "11598166203_3c6bf4f2b0_o.jpg", 1298, "(38, 43)", "f"),
     ("48879802@N06", "9491389556_bd21ecd7b1_o.jpg", 1350, "(15, 20)", "m")],
    [("113445054@N07", "11763777465_11d01c34ce_o.jpg", 1409, "35", "u"),          # dropped: no label
     ("113445054@N07", "11764005785_1e4df4bfbd_o.jpg", 1410, "None", "u"),         # dropped: no label
     ("113445054@N07", "11764183186_a5a8b6fbac_o.jpg", 1411, "22", ""),            # dropped: no label
     ("113445054@N07", "11764211745_9b2f1a0f9f_o.jpg", 1412, "(48, 53)", "m"),
     ("8187011@N06", "10109669824_c3f6f7b0d6_o.jpg", 1490, "(27, 32)", "f")],
    [("64504106@N06", "11229963015_cbfd3d4bd5_o.jpg", 1742, "(60, 100)", "m"),
     ("64504106@N06", "11230069584_9d20b5fb1f_o.jpg", 1743, "(4, 6)", "f"),       # image missing
     ("66870968@N06", "10939848305_4f05e8a5d7_o.jpg", 1790, "(4, 6)", "m")],
    [("101515718@N03", "10590387484_3b23df19e1_o.jpg", 2011, "57", "f"),
     ("101515718@N03", "10591195236_c1f2a1e5e3_o.jpg", 2012, "(38, 48)", "m"),
     ("101515718@N03", "10590523353_4ed8e21b3b_o.jpg", 2013, "(15, 20)", "f"),
     ("114841417@N06", "12059865372_6d6f6ba0da_o.jpg", 2100, "(0, 2)", "m")],
]
# (age group, gender) expected per kept row, fold by fold; -1: unlabelled.
ADIENCE_LABELS = [[(4, 1), (2, 0), (0, -1), (-1, 0)], [(-1, 0), (-1, 1), (5, 1), (3, 0)],
                  [(6, 0), (-1, 1)], [(7, 0), (1, 0)], [(-1, 1), (-1, 0), (3, 1), (0, 0)]]
ADIENCE_MISSING = (3, 1)   # (fold, row) whose image is not written


def make_adience(root: Path) -> dict:
    for fold, rows in enumerate(ADIENCE_ROWS):
        lines = [ADIENCE_HEADER]
        for n, (user, image, face, age, gender) in enumerate(rows):
            lines.append(f"{user}\t{image}\t{face}\t{age}\t{gender}\t{100 + n}\t{80 + n}\t500\t500\t-10\t0\t35")
            if (fold, n) != ADIENCE_MISSING:
                write_image(root / "aligned" / user / f"landmark_aligned_face.{face}.{image}", 100 * fold + n)
                write_image(root / "faces" / user / f"coarse_tilt_aligned_face.{face}.{image}", 100 * fold + n)
        (root / f"fold_{fold}_data.txt").write_text("\n".join(lines) + "\n")
    return {"labels": ADIENCE_LABELS, "dropped": 3,
            "missing": ["64504106@N06/landmark_aligned_face.1743.11230069584_9d20b5fb1f_o.jpg"]}


AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                    "valence,arousal")


def _affectnet_line(relative: str, expression: int, n: int) -> str:
    landmarks = ";".join(f"{v:.2f}" for v in np.linspace(10, 100, 136))
    return f"{relative},{10 + n},{12 + n},120,120,{landmarks},{expression},{0.1 * n - 0.5:.6f},{0.05 * n:.6f}"


def make_affectnet(root: Path) -> dict:
    images = root / "Manually_Annotated" / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    train_codes = [0, 1, 1, 2, 3, 4, 5, 6, 6, 6, 7, 8, 9, 10]
    lines = [AFFECTNET_HEADER]
    for n, code in enumerate(train_codes):
        relative = f"{n % 3 + 1}/{n:056x}.jpg"
        write_image(images / relative, 300 + n, mode="RGB" if n % 4 else "L")
        lines.append(_affectnet_line(relative, code, n))
    write_truncated_jpeg(images / "9" / "broken.jpg", 1)
    lines.append(_affectnet_line("9/broken.jpg", 3, 99))
    blank = _affectnet_line("1/blank.jpg", 0, 97).split(",")
    blank[6] = ""
    damaged = [",".join(blank),                                                 # line 17: blank expression
               _affectnet_line("1/short.jpg", 2, 96).rsplit(",", 3)[0],         # line 18: cut short
               _affectnet_line("1/code12.jpg", 12, 95)]                         # line 19: unknown code
    for name in ("blank.jpg", "short.jpg", "code12.jpg"):
        write_image(images / "1" / name, 390)
    lines.extend(damaged)
    (lists / "training.csv").write_text("\n".join(lines) + "\n")
    val_codes = [0, 1, 2, 3, 4, 5, 6, 7]
    lines = [AFFECTNET_HEADER]
    for n, code in enumerate(val_codes):
        relative = f"{n + 1}/{n + 1000:056x}.png"
        write_image(images / relative, 400 + n, fmt="PNG", mode="RGBA")
        lines.append(_affectnet_line(relative, code, n))
    (lists / "validation.csv").write_text("\n".join(lines) + "\n")
    train_labels = [c for c in train_codes if c < 7]
    return {"train_labels": sorted(train_labels), "validation_labels": list(range(7)),
            "dropped": {"contempt": 1, "none": 1, "uncertain": 1, "non-face": 1},
            "unreadable": ["9/broken.jpg"],
            "damaged": ["training.csv line 17", "training.csv line 18"],
            "unknown_codes": ["training.csv line 19 (code 12)"]}


def make_fotw(root: Path) -> dict:
    rows = {"train": [("a.jpg", "0"), ("b.jpg", "female"), ("c.jpg", "2"), ("d.jpg", "m"), ("e.jpg", "?")],
            "val": [("f.jpg", "1"), ("g.jpg", "not sure")]}
    root.mkdir(parents=True)
    for n, (split, items) in enumerate(rows.items()):
        lines = ["img,x,y,w,h,smile,gender"] + [f"{name},1,2,30,30,0,{g}" for name, g in items]
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
        for m, (name, _) in enumerate(items):
            write_image(root / split / name, 500 + 10 * n + m)
    return {"train": [0, 1, 2, 0], "validation": [1, 2], "skipped": ["train.csv line 6"]}


def datenum(year: int, month: int, day: int) -> float:
    """MATLAB's serial date number."""
    return float(datetime.date(year, month, day).toordinal() + 366)


def _write_mat(path: Path, part: str, rows) -> None:
    from scipy.io import savemat
    n = len(rows)
    paths = np.empty((1, n), dtype=object)
    names = np.empty((1, n), dtype=object)
    locations = np.empty((1, n), dtype=object)
    for i, row in enumerate(rows):
        paths[0, i], names[0, i] = row["path"], f"Person {i}"
        locations[0, i] = np.array([[10.0, 12.0, 90.0, 95.0]])
    struct = {"dob": np.array([[r["dob"] for r in rows]]),
              "photo_taken": np.array([[r["taken"] for r in rows]]),
              "full_path": paths, "gender": np.array([[r["gender"] for r in rows]]), "name": names,
              "face_location": locations, "face_score": np.array([[r["score"] for r in rows]]),
              "second_face_score": np.array([[r["second"] for r in rows]])}
    if part == "imdb":
        struct["celeb_names"] = names
        struct["celeb_id"] = np.arange(1, n + 1)[None, :]
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {part: struct})


def make_imdb_wiki(root: Path) -> dict:
    nan, inf = float("nan"), float("inf")
    imdb = [dict(path="01/nm0000001_rm124825600_1899-5-10_1968.jpg", dob=datenum(1899, 5, 10), taken=1968,
                 gender=1.0, score=4.3, second=nan),
            dict(path="02/nm0000002_rm221957120_1924-9-16_1974.jpg", dob=datenum(1924, 9, 16), taken=1974,
                 gender=0.0, score=2.1, second=nan),
            dict(path="03/nm0000003_rm0_1930-1-1_1980.jpg", dob=datenum(1930, 1, 1), taken=1980,
                 gender=1.0, score=-inf, second=nan),
            dict(path="04/nm0000004_rm0_1940-1-1_1990.jpg", dob=datenum(1940, 1, 1), taken=1990,
                 gender=0.0, score=0.4, second=nan),
            dict(path="05/nm0000005_rm0_1950-1-1_2000.jpg", dob=datenum(1950, 1, 1), taken=2000,
                 gender=1.0, score=3.0, second=2.5),
            dict(path="06/nm0000006_rm0_1960-1-1_2010.jpg", dob=datenum(1960, 1, 1), taken=2010,
                 gender=nan, score=3.0, second=nan),
            dict(path="07/nm0000007_rm0_1970-7-1_2000.jpg", dob=datenum(1970, 7, 1), taken=2000,
                 gender=0.0, score=1.0, second=-0.7),                  # a second face, but score <= 0: kept
            dict(path="08/nm0000008_rm0_1895-3-3_2000.jpg", dob=datenum(1895, 3, 3), taken=2000,
                 gender=1.0, score=2.0, second=nan),                   # 105 years old
            dict(path="09/nm0000009_rm0_2012-3-3_2010.jpg", dob=datenum(2012, 3, 3), taken=2010,
                 gender=1.0, score=2.0, second=nan)]                   # taken before birth
    wiki = [dict(path="17/10000217_1981-05-05_2009.jpg", dob=datenum(1981, 5, 5), taken=2009, gender=0.0,
                 score=1.5, second=nan),
            dict(path="12/100012_1948-07-03_2008.jpg", dob=0.0, taken=2008, gender=1.0, score=2.0, second=nan)]
    for part, rows in (("imdb", imdb), ("wiki", wiki)):
        _write_mat(root / f"{part}_crop" / f"{part}.mat", part, rows)
        for n, row in enumerate(rows):
            write_image(root / f"{part}_crop" / row["path"], 600 + n, mode="L" if n % 2 else "RGB")
    # (gender in FotW's order, age with the mid-year rule: born in September -> one year less)
    return {"kept": {"imdb_crop/01/nm0000001_rm124825600_1899-5-10_1968.jpg": (0, 69),
                     "imdb_crop/02/nm0000002_rm221957120_1924-9-16_1974.jpg": (1, 49),
                     "imdb_crop/07/nm0000007_rm0_1970-7-1_2000.jpg": (1, 29),
                     "wiki_crop/17/10000217_1981-05-05_2009.jpg": (1, 28)},
            "dropped": {"no face detected": 1, "face score below 1.0": 1, "a second face": 1,
                        "age outside 0-100": 3, "unknown gender": 1}}


def fer_row(label: int, seed: int, usage: str, count: int = 48 * 48) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, count)
    return f"{label},{' '.join(map(str, pixels))},{usage}"


def make_fer2013(root: Path) -> dict:
    rows = [fer_row(0, 1, "Training"), fer_row(3, 2, "Training"), fer_row(6, 3, "PublicTest"),
            fer_row(5, 4, "PrivateTest"), fer_row(2, 5, "PrivateTest"), fer_row(4, 6, "Training", count=2303)]
    (root / "fer2013").mkdir(parents=True)
    (root / "fer2013" / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return {"train": [0, 3], "validation": [6], "test": [2, 5], "malformed": ["fer2013.csv line 7"]}


def make_utkface(root: Path) -> dict:
    folder = root / "UTKFace"
    good = {"1_0_0_20161219140623097.jpg.chip.jpg": (1, 0, 0),
            "26_1_2_20170116171048641.jpg.chip.jpg": (26, 1, 2),
            "80_0_4_20170117172023520.jpg.chip.jpg": (80, 0, 4)}
    for n, name in enumerate(good):
        write_image(folder / name, 700 + n, size=(40, 40))
    malformed = ["39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg"]
    for n, name in enumerate(malformed):
        write_image(folder / name, 710 + n)
    write_not_an_image(folder / "50_0_3_20170119180000000.jpg.chip.jpg")
    return {"labels": {f"UTKFace/{k}": v for k, v in good.items()},
            "malformed": [f"UTKFace/{m}" for m in malformed],
            "unreadable": ["UTKFace/50_0_3_20170119180000000.jpg.chip.jpg"]}
