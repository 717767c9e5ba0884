"""LFW's ``pairs.txt``: verification pairs in folds.

The first line is ``<folds><TAB><n>``; then each fold has n same-person lines ``name<TAB>i<TAB>j`` followed
by n different-person lines ``name1<TAB>i<TAB>name2<TAB>j``. Image i of ``name`` is
``name/name_<i:04d>.<ext>`` (1-based). LFW's View 2 file is 10 folds of 300 + 300 pairs.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from paenet.data.files import find_image


@dataclasses.dataclass(frozen=True)
class Pair:
    name1: str
    index1: int
    name2: str
    index2: int
    same: bool
    fold: int

    @property
    def stems(self) -> tuple[str, str]:
        """The two images' paths relative to the image folder, without extension."""
        return image_stem(self.name1, self.index1), image_stem(self.name2, self.index2)


def image_stem(name: str, index: int) -> str:
    return f"{name}/{name}_{index:04d}"


def read_pairs(path) -> list[Pair]:
    """Every pair of `path`, with its fold (0-based) and whether both images show the same person."""
    path = Path(path)
    lines = [l.split() for l in path.read_text().splitlines() if l.strip()]
    if not lines or len(lines[0]) != 2:
        raise ValueError(f"{path}: the first line must be '<folds><TAB><pairs per fold and kind>'")
    folds, per_kind = (int(v) for v in lines[0])
    body = lines[1:]
    if len(body) != 2 * folds * per_kind:
        raise ValueError(f"{path}: the header announces {folds} folds x {2 * per_kind} pairs "
                         f"= {2 * folds * per_kind} lines, the file has {len(body)}")
    pairs = []
    for n, fields in enumerate(body):
        fold, same = n // (2 * per_kind), n % (2 * per_kind) < per_kind
        line_no = n + 2
        if same and len(fields) == 3:
            pairs.append(Pair(fields[0], int(fields[1]), fields[0], int(fields[2]), True, fold))
        elif not same and len(fields) == 4:
            pairs.append(Pair(fields[0], int(fields[1]), fields[2], int(fields[3]), False, fold))
        else:
            kind = "same-person (3 fields)" if same else "different-person (4 fields)"
            raise ValueError(f"{path}, line {line_no}: expected a {kind} pair, got {fields}")
    return pairs


def resolve_pairs(pairs, image_dir) -> tuple[list[tuple[Pair, Path, Path]], list[Pair]]:
    """Splits `pairs` into those whose two images exist under `image_dir` (with their paths) and those
    with a missing image (for example where alignment found no face)."""
    found, missing = [], []
    for pair in pairs:
        paths = [find_image(image_dir, stem) for stem in pair.stems]
        if None in paths:
            missing.append(pair)
        else:
            found.append((pair, *paths))
    return found, missing
