"""Expansion (MorphNet-style widening) that keeps every finished task bit-identical (DESIGN §4).

A model is built from a width config (filters per expandable masked layer). Expanding rebuilds it wider
and transplants every old value into the leading slice of its variable; new kernel entries keep the
layer initializer's values with mask 0 and are claimed by the active task. Each finished task keeps
computing at the kernel shapes it was finished with (``PackableModel.frozen_shapes``), so it never reads
a new weight or channel. The new weights start free (mask 0); ``Packer.expand`` lets the active task
claim them and refuses an expansion that would pass the cap.

Policies choose the new widths: ``uniform`` widens every expandable layer by sqrt(ratio) in filters
(about `ratio` x the parameters); ``saturation`` spends the same number of new filters on the layers
whose weights are most owned by earlier tasks. A widened layer of at least 8 multiples of the policy's
`multiple` (8 by default: 64 filters) is rounded to the nearest multiple, at least one multiple wider: off
a multiple of 8, CPU kernels (oneDNN's fused BatchNorm: 2.7x slower at 71 channels than at 72) and GPU
tensor cores are slow. Narrower layers widen as the ratio says.
"""
from __future__ import annotations

import math

import numpy as np

from paenet.config import ExpansionPolicy
from paenet.models.base import layer_key

def masked_parameters(model) -> int:
    """Number of masked kernel weights in `model`."""
    return sum(int(np.prod(l.kernel.shape)) for l in model.masked_layers())


def _widened(width: int, target: int, multiple: int) -> int:
    """`target` filters (more than `width`) rounded to the nearest multiple of `multiple`, and at least
    the first multiple above `width`; a layer narrower than 8 multiples, where rounding could change its
    width by more than 1/16, keeps `target`."""
    if width < 8 * multiple:
        return target
    return max(multiple * math.floor(target / multiple + 0.5), multiple * (width // multiple + 1))


def uniform_widths(widths: dict[str, int], ratio: float, multiple: int) -> dict[str, int]:
    """Every width times sqrt(ratio), rounded up, at least one filter more, then to a `multiple`."""
    factor = math.sqrt(ratio)
    return {k: _widened(w, max(w + 1, math.ceil(w * factor)), multiple) for k, w in widths.items()}


def saturation_widths(model, widths: dict[str, int], ratio: float, task: int, multiple: int) -> dict[str, int]:
    """As many new filters as ``uniform_widths`` adds, shared out in proportion to each layer's
    filters times the fraction of its weights that tasks other than `task` own; each layer given some is
    then rounded to a `multiple`."""
    layers = {layer_key(l): l for l in model.masked_layers()}
    taken = {}
    for key in widths:
        mask = layers[key].mask.numpy()
        taken[key] = float(np.count_nonzero((mask != 0) & (mask != task))) / mask.size
    uniform = uniform_widths(widths, ratio, multiple)
    budget = sum(uniform.values()) - sum(widths.values())
    weight = {k: widths[k] * taken[k] for k in widths}
    total = sum(weight.values())
    if total == 0:
        return uniform
    shares = {k: budget * weight[k] / total for k in widths}
    added = {k: math.floor(v) for k, v in shares.items()}
    # Largest remainders get the filters that rounding down left over.
    for k in sorted(widths, key=lambda k: shares[k] - added[k], reverse=True)[: budget - sum(added.values())]:
        added[k] += 1
    return {k: _widened(w, w + added[k], multiple) if added[k] else w for k, w in widths.items()}


def frozen_shapes_for(model, active_task: int) -> dict:
    """Every task but `active_task` pinned to the kernel shapes it computes with now, and its own
    variables to their present shapes (see ``PackableModel.frozen_shapes``)."""
    others = [t for t in range(1, model.num_tasks + 1) if t != active_task]
    kernels = {layer_key(l): [None if t == active_task else list(l.task_shape(t))
                              for t in range(1, model.num_tasks + 1)] for l in model.masked_layers()}
    variables = dict(model.frozen_shapes["variables"])
    for t in others:
        for key, value in model.task_values(t).items():
            variables.setdefault(key, list(value.shape))
    return {"kernels": kernels, "variables": variables}


def expand(model, widths: dict[str, int], active_task: int):
    """A wider copy of `model` with `widths` (layers not named keep theirs); `model` is left untouched.

    The new weights are free (mask 0): the caller lets `active_task` claim them; a finished
    `active_task` is refused (FinishedTaskError): it would compute with the new width.
    """
    model.check_unfinished(active_task, "expand")
    current = model.width_config()
    unknown = set(widths) - set(current)
    if unknown:
        raise ValueError(f"no expandable layers named {sorted(unknown)}; expandable: {sorted(current)}")
    narrower = {k: (current[k], w) for k, w in widths.items() if w < current[k]}
    if narrower:
        raise ValueError(f"expansion cannot narrow layers (current, asked): {narrower}")
    return model.with_width_config({**current, **widths}, frozen_shapes_for(model, active_task))


def propose_widths(model, policy: ExpansionPolicy, active_task: int) -> dict[str, int]:
    """The widths of the next expansion round under `policy`."""
    widths = model.width_config()
    if policy.policy == "uniform":
        return uniform_widths(widths, policy.ratio, policy.multiple)
    return saturation_widths(model, widths, policy.ratio, active_task, policy.multiple)
