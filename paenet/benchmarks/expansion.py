"""Expansion rows: widening Inception-ResNet-v1 (rebuild + exact transplant) against building the same
widths from scratch, and the expanded masked model's forward and train step against a plain Keras model
of the same widths (the new task, at full width, after one expansion of the app's default policy: uniform,
ratio 1.2, widths rounded to multiples of 8)."""
from __future__ import annotations

from paenet.benchmarks.core import masked_vs_plain_rows
from paenet.benchmarks.inception import CLASSES, batch, describe, packed_model, settings
from paenet.benchmarks.timing import Rows, compare_rates, row
from paenet.config import ExpansionPolicy
from paenet.expansion import expand, propose_widths
from paenet.models import InceptionResnetV1, plain_inception_resnet_v1
from paenet.packing import claim_free_weights

EXPANSION = ExpansionPolicy(ratio=1.2)


def _expand_rows(quick: bool, wanted):
    s = settings(quick)
    model = packed_model(s, CLASSES, tasks=2)
    widths = propose_widths(model, EXPANSION, active_task=2)
    scratch = {**model.get_config(), "widths": {k.replace(".", "/"): v for k, v in widths.items()}}
    timing = dict(repeats=1, calls=1, warmup=1) if quick else dict(repeats=3, calls=1, warmup=1)
    ours, ref = compare_rates(lambda: expand(model, widths, active_task=2),
                              lambda: InceptionResnetV1.from_config(scratch).build_variables(), 1, **timing)
    yield row("expand", ours, ref, "expansions/s",
              config=f"{describe(s)} {s['size']}px, {describe_expansion()}; reference: the same widths built anew")


def _expanded_rows(quick: bool, wanted):
    s = settings(quick)
    model = packed_model(s, CLASSES, tasks=2)
    wide = expand(model, propose_widths(model, EXPANSION, active_task=2), active_task=2)
    claim_free_weights(wide, 2)
    x, y = batch(s)
    yield from masked_vs_plain_rows(wide, plain_inception_resnet_v1(wide, CLASSES), x, y, s["timing"],
                                    names=("forward_expanded_vs_plain", "train_step_expanded_vs_plain"),
                                    config=f"{describe(s)} after {describe_expansion()}, {s['size']}px "
                                           f"batch {s['batch']}, float32", task=2, wanted=wanted)


def describe_expansion() -> str:
    return f"{EXPANSION.policy} expansion of ratio {EXPANSION.ratio} to multiples of {EXPANSION.multiple}"


GROUPS = (Rows(("expand",), _expand_rows),
          Rows(("forward_expanded_vs_plain", "train_step_expanded_vs_plain"), _expanded_rows))
