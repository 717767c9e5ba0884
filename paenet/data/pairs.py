"""Verification pairs in folds: LFW's ``pairs.txt``, and pairs drawn from a folder of identities.

The first line of ``pairs.txt`` is ``<folds><TAB><n>``; then each fold has n same-person lines
``name<TAB>i<TAB>j`` followed by n different-person lines ``name1<TAB>i<TAB>name2<TAB>j``. Image i of ``name``
is ``name/name_<i:04d>.<ext>`` (1-based). LFW's View 2 file is 10 folds of 300 + 300 pairs.

``draw_pairs`` makes pairs in the same fold layout from any ``<identity>/<image>`` folder (VGGFace2's
``test/``, its aligned copy, ...), whatever its file names, as (first path, second path, same, fold).
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
    folds, per_kind = (_number(path, 1, v) for v in lines[0])
    body = lines[1:]
    if len(body) != 2 * folds * per_kind:
        raise ValueError(f"{path}: the header announces {folds} folds x {2 * per_kind} pairs "
                         f"= {2 * folds * per_kind} lines, the file has {len(body)}")
    pairs = []
    for n, fields in enumerate(body):
        fold, same = n // (2 * per_kind), n % (2 * per_kind) < per_kind
        line_no = n + 2
        if same and len(fields) == 3:
            pairs.append(Pair(fields[0], _number(path, line_no, fields[1]), fields[0],
                              _number(path, line_no, fields[2]), True, fold))
        elif not same and len(fields) == 4:
            pairs.append(Pair(fields[0], _number(path, line_no, fields[1]), fields[2],
                              _number(path, line_no, fields[3]), False, fold))
        else:
            kind = "same-person (3 fields)" if same else "different-person (4 fields)"
            raise ValueError(f"{path}, line {line_no}: expected a {kind} pair, got {fields}")
    return pairs


def _number(path, line_no: int, text: str) -> int:
    """`text` as a positive integer (a fold count, a pair count, an image index); ValueError naming the
    file and line otherwise."""
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{path}, line {line_no}: expected a positive integer, got {text!r}")
    return int(text)


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


def generate_pairs(images: dict[str, list[tuple[int, str]]], folds: int, per_fold: int, seed: int) -> list[Pair]:
    """Verification pairs in LFW's fold layout from `images` (person -> [(image index, group)]): per fold,
    `per_fold` same-person pairs of two images from different groups (e.g. different recording sessions)
    and `per_fold` different-person pairs, drawn by `seed`, no pair twice."""
    import numpy as np
    rng = np.random.default_rng(seed)
    names = sorted(images)
    same_candidates = [(n, a, b) for n in names for i, (a, ga) in enumerate(images[n])
                       for b, gb in images[n][i + 1:] if ga != gb]
    if len(same_candidates) < folds * per_fold or len(names) < 2:
        raise ValueError(f"{len(same_candidates)} same-person pairs across groups for {folds} x {per_fold} wanted")
    same = [same_candidates[i] for i in rng.permutation(len(same_candidates))[: folds * per_fold]]
    different, seen = [], set()
    while len(different) < folds * per_fold:
        n1, n2 = sorted(rng.choice(names, 2, replace=False))
        a, b = images[n1][rng.integers(len(images[n1]))][0], images[n2][rng.integers(len(images[n2]))][0]
        if (n1, a, n2, b) not in seen:
            seen.add((n1, a, n2, b))
            different.append((n1, a, n2, b))
    pairs = []
    for f in range(folds):
        pairs += [Pair(n, a, n, b, True, f) for n, a, b in same[f * per_fold:(f + 1) * per_fold]]
        pairs += [Pair(n1, a, n2, b, False, f) for n1, a, n2, b in different[f * per_fold:(f + 1) * per_fold]]
    return pairs


def write_pairs(path, pairs: list[Pair]) -> None:
    """`pairs` (as ``generate_pairs`` orders them: per fold, same then different) in LFW's format."""
    folds = max(p.fold for p in pairs) + 1
    per_kind = sum(1 for p in pairs if p.fold == 0 and p.same)
    lines = [f"{folds}\t{per_kind}"]
    for p in pairs:
        lines.append(f"{p.name1}\t{p.index1}\t{p.index2}" if p.same else f"{p.name1}\t{p.index1}\t{p.name2}\t{p.index2}")
    Path(path).write_text("\n".join(lines) + "\n")


def identity_images(folder) -> dict[str, list[Path]]:
    """Identity (sub-folder name) -> its image files, sorted, for every sub-folder of `folder` that holds
    an image."""
    from paenet.data.files import image_files
    folder = Path(folder)
    found = {d.name: image_files(d) for d in sorted(folder.iterdir()) if d.is_dir()}
    return {name: images for name, images in found.items() if images}


def draw_pairs(images: dict[str, list[Path]], folds: int, per_fold: int,
               seed: int) -> list[tuple[Path, Path, bool, int]]:
    """Verification pairs drawn from `images` (identity -> image paths) by `seed`, in LFW's balanced layout:
    per fold, `per_fold` same-identity pairs (an identity with 2 or more images, then two of its images)
    and `per_fold` different-identity pairs (two identities, one image each), identities uniformly, no pair
    twice. Each fold's pairs in order: same, then different."""
    import numpy as np
    rng = np.random.default_rng(seed)
    names = sorted(images)
    several = [n for n in names if len(images[n]) >= 2]
    wanted = folds * per_fold
    counts = np.array([len(images[n]) for n in names])
    same_available = int(np.sum(counts * (counts - 1) // 2))
    different_available = int((counts.sum() ** 2 - np.sum(counts ** 2)) // 2)
    if min(same_available, different_available) < wanted:
        raise ValueError(f"{len(names)} identities give {same_available} same-identity and {different_available} "
                         f"different-identity pairs: too few for {folds} folds x {per_fold} pairs of each kind")
    same, different = {}, {}
    while len(same) < wanted:
        name = several[rng.integers(len(several))]
        a, b = sorted(rng.choice(len(images[name]), 2, replace=False))
        same.setdefault((images[name][a], images[name][b]), None)
    while len(different) < wanted:
        first, second = sorted(rng.choice(len(names), 2, replace=False))
        a = images[names[first]][rng.integers(len(images[names[first]]))]
        b = images[names[second]][rng.integers(len(images[names[second]]))]
        different.setdefault((a, b), None)
    same, different = list(same), list(different)
    pairs = []
    for f in range(folds):
        pairs += [(a, b, True, f) for a, b in same[f * per_fold:(f + 1) * per_fold]]
        pairs += [(a, b, False, f) for a, b in different[f * per_fold:(f + 1) * per_fold]]
    return pairs
