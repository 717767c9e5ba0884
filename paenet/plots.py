"""The report's PNG plots, one function per plot, each taking plain data and writing one file.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str) -> str:
    figure.savefig(path, dpi=100)
    return path


def accuracy_matrix(matrices: dict, names: list, path: str) -> str:
    """Heat maps of accuracy (rows: after packing task j; columns: task i), one per split;
    unmeasured entries (NaN) stay blank."""
    n = len(names)
    figure = _figure(1.0 + 4.5 * len(matrices), 1.5 + 0.45 * n)
    for ax, (split, matrix) in zip(np.atleast_1d(figure.subplots(1, len(matrices))), matrices.items()):
        image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis")
        for (j, i), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                ax.text(i, j, f"{value:.3f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 0.6 else "black")
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), [f"after {j + 1}: {name}" for j, name in enumerate(names)])
        ax.set_xlabel("task evaluated")
        ax.set_title(f"accuracy ({split})")
        figure.colorbar(image, ax=ax, shrink=0.8)
    return _save(figure, path)


def ownership(counts: dict, names: list, path: str) -> str:
    """Per masked layer, the share of its kernel entries each task owns, stacked, with the free share."""
    layers = list(counts)
    shares = np.array([counts[k] / max(1, counts[k].sum()) for k in layers])   # [layer, owner]
    figure = _figure(8.0, 1.5 + 0.22 * len(layers))
    ax = figure.subplots()
    left = np.zeros(len(layers))
    colours = ["white"] + [f"C{t % 10}" for t in range(len(names))]
    for owner, label in enumerate(["free", *names]):
        ax.barh(layers, shares[:, owner], left=left, label=label, color=colours[owner],
                edgecolor="grey", linewidth=0.3)
        left += shares[:, owner]
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the layer's kernel weights")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def pruning_rounds(rounds: dict, path: str) -> str:
    """Target sparsity and validation accuracy after each pruning round, one line per task
    (`rounds`: task name -> the pruning entries of its record)."""
    figure = _figure(8.0, 5.0)
    sparsity_ax, accuracy_ax = figure.subplots(2, 1, sharex=True)
    for name, entries in rounds.items():
        steps = range(1, len(entries) + 1)
        sparsity_ax.plot(steps, [e["sparsity"] for e in entries], marker="o", label=name)
        accuracy = [e.get("val_accuracy", np.nan) for e in entries]
        accuracy_ax.plot(steps, accuracy, marker="o", label=name)
    sparsity_ax.set_ylabel("target sparsity")
    accuracy_ax.set_ylabel("validation accuracy")
    accuracy_ax.set_xlabel("pruning round")
    accuracy_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    sparsity_ax.legend(fontsize=8)
    return _save(figure, path)


def model_size(rows: list, mb: int, path: str) -> str:
    """The packed model after each task (paper accounting) against as many separate networks."""
    figure = _figure(7.0, 4.0)
    ax = figure.subplots()
    x = np.arange(1, len(rows) + 1)
    ax.bar(x - 0.2, [r["separate_bytes"] / mb for r in rows], 0.4, label="separate models")
    ax.bar(x + 0.2, [r["cumulative_bytes"] / mb for r in rows], 0.4, label="PAENet (tasks 1..k)")
    for xi, r in zip(x, rows):
        ax.text(xi + 0.2, r["cumulative_bytes"] / mb, f"{r['ratio']:.0%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"{r['task']}: {r['name']}" for r in rows], rotation=20, ha="right")
    ax.set_ylabel("MB (2^20 bytes)")
    ax.legend()
    return _save(figure, path)


def roc(fpr, tpr, auc: float, path: str) -> str:
    """A ROC curve with its area under the curve."""
    figure = _figure(5.0, 5.0)
    ax = figure.subplots()
    ax.plot(fpr, tpr, label=f"AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return _save(figure, path)


def final_accuracy_per_task(results: dict, names: list, path: str, caption: str = "") -> str:
    """Final test accuracy of every task, one line per method (`results`: method -> accuracies), under an
    optional `caption` (where the figures came from)."""
    figure = _figure(1.5 + 0.45 * len(names), 4.0)
    ax = figure.subplots()
    for i, (method, accuracies) in enumerate(results.items()):
        ax.plot(range(1, len(names) + 1), accuracies, marker="o", color=f"C{i}", label=method)
    ax.set_xticks(range(1, len(names) + 1), [str(i) for i in range(1, len(names) + 1)])
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy after the last task")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if caption:
        figure.suptitle(caption, fontsize=6)
    return _save(figure, path)


def accuracy_against_size(points: dict, path: str, caption: str = "") -> str:
    """Average final accuracy against model size, one point per method (`points`: method -> (MB, acc)),
    under an optional `caption`."""
    figure = _figure(5.5, 4.0)
    ax = figure.subplots()
    for i, (method, (size, accuracy)) in enumerate(points.items()):
        ax.scatter([size], [accuracy], color=f"C{i}", label=method, s=40)
        ax.annotate(method, (size, accuracy), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("model size, MB with masks (log)")
    ax.set_ylabel("average final test accuracy")
    ax.grid(alpha=0.3)
    if caption:
        figure.suptitle(caption, fontsize=6)
    return _save(figure, path)
