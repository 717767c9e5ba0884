"""A cache of decoded images changes nothing the training pipeline delivers, and it is read, not the files."""
import numpy as np
from PIL import Image

from paenet.data.pipeline import files, training_dataset


def test_cached_pipeline_gives_the_same_batches_and_reads_the_files_once(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):      # one image needs resizing to 182 px: the cache keeps it as decoded
        size = 182 if i else 150
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(paths[-1])
    labels = list(range(6))
    plain = training_dataset(files(paths, labels), 4, seed=3, shuffle_buffer=6).take(6)
    cached = training_dataset(files(paths, labels), 4, seed=3, shuffle_buffer=6, cache="").take(6)
    expected = [(x.numpy(), y.numpy()) for x, y in plain]
    assert len({int(y) for _, ys in expected for y in ys}) == 6
    iterator = iter(cached)
    first = [next(iterator) for _ in range(2)]          # 8 images: the whole first epoch, cache complete
    for path in paths:
        path.unlink()                                   # from here on only the cache can deliver
    got = [(x.numpy(), y.numpy()) for x, y in [*first, *iterator]]
    assert len(got) == len(expected)
    for (x, y), (ex, ey) in zip(got, expected):
        assert x.tobytes() == ex.tobytes() and np.array_equal(y, ey)
