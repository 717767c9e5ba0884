"""Random model states for tests: every kernel entry owned by one of `owners`, values drawn afresh."""
import numpy as np


def randomize(model, rng, owners=(1, 2), scale: float = 1.0):
    """Masks drawn from `owners`, moving variances from [0.5, 2), every other float normal x `scale`."""
    for v in model.variables:
        if v.dtype == "uint8":
            v.assign(rng.choice(np.asarray(owners, np.uint8), size=v.shape))
        elif "moving_variance" in v.path:
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype(np.float32))
        elif "seed_generator" not in v.path:
            v.assign(scale * rng.normal(size=v.shape).astype(np.float32))
    return model
