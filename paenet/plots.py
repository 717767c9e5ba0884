"""The report's PNG plots, one function per plot, each taking plain data and writing one file.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str) -> str:
    figure.savefig(path, dpi=100)
    return path


def accuracy_matrix(matrices: dict, names: list, path: str) -> str:
    """Heat maps of accuracy (rows: after packing task j; columns: task i), one per split; unmeasured
    entries (NaN) stay blank, those of a task without that split say so."""
    n = len(names)
    figure = _figure(1.0 + 4.5 * len(matrices), 1.5 + 0.45 * n)
    for ax, (split, matrix) in zip(np.atleast_1d(figure.subplots(1, len(matrices))), matrices.items()):
        image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis")
        for (j, i), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                ax.text(i, j, f"{value:.3f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 0.6 else "black")
            elif j >= i and np.isnan(matrix[:, i]).all():
                ax.text(i, j, f"no {split}\nsplit", ha="center", va="center", fontsize=7, color="grey")
        ax.set_xticks(range(n), names, rotation=45, ha="right")
        ax.set_yticks(range(n), [f"after {j + 1}: {name}" for j, name in enumerate(names)])
        ax.set_xlabel("task evaluated")
        ax.set_title(f"accuracy ({split})")
        figure.colorbar(image, ax=ax, shrink=0.8)
    return _save(figure, path)


def ownership(counts: dict, names: list, path: str) -> str:
    """Per group of masked layers (`counts`: label -> kernel entries per owner, free first), the share of
    its kernel entries each task owns, stacked and labelled, under a first bar for the whole network."""
    labels = ["whole network", *counts]
    totals = np.sum(list(counts.values()), axis=0)
    shares = np.array([c / max(1, c.sum()) for c in [totals, *counts.values()]])   # [group, owner]
    figure = _figure(9.0, 1.2 + 0.3 * len(labels))
    ax = figure.subplots()
    left = np.zeros(len(labels))
    colours = ["white"] + [f"C{t % 10}" for t in range(len(names))]
    for owner, label in enumerate(["free", *names]):
        ax.barh(labels, shares[:, owner], left=left, label=label, color=colours[owner],
                edgecolor="grey", linewidth=0.3)
        for y, (x, share) in enumerate(zip(left, shares[:, owner])):
            if share >= 0.06:
                ax.text(x + share / 2, y, f"{share:.0%}", ha="center", va="center", fontsize=7,
                        color="black" if owner == 0 else "white")
        left += shares[:, owner]
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the kernel weights")
    ax.tick_params(axis="y", labelsize=7)
    figure.legend(loc="outside upper center", ncols=len(names) + 1, fontsize=8)
    return _save(figure, path)


def pruning_rounds(rounds: dict, marks: dict, path: str) -> str:
    """Validation accuracy against target sparsity after each pruning round, one panel per task
    (`rounds`: task name -> the pruning entries of its record), with the task's goal as a dashed line
    and the round it kept ringed (`marks`: task name -> (goal, chosen sparsity), either may be None)."""
    columns = min(3, len(rounds))
    rows = -(-len(rounds) // columns)
    figure = _figure(1.0 + 3.2 * columns, 0.6 + 2.8 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax, (name, entries) in zip(axes, rounds.items()):
        sparsity = [e["sparsity"] for e in entries]
        accuracy = [e.get("val_accuracy", np.nan) for e in entries]
        ax.plot(sparsity, accuracy, marker="o", color="C0", label="validation accuracy")
        goal, chosen = marks.get(name, (None, None))
        if goal is not None:
            ax.axhline(goal, linestyle="--", color="C3", linewidth=1, label=f"goal {goal:.3f}")
        kept = [(s, a) for s, a in zip(sparsity, accuracy)
                if chosen is not None and np.isclose(s, chosen) and np.isfinite(a)]
        if not np.isfinite(accuracy).any():
            ax.text(0.5, 0.75, "rounds not validated", transform=ax.transAxes, ha="center", color="grey")
        if kept:
            ax.scatter(*kept[-1], s=160, facecolors="none", edgecolors="C2", linewidths=2,
                       label=f"kept: {kept[-1][0]:.2f}", zorder=3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("target sparsity of the round")
        ax.set_ylabel("validation accuracy")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(rounds):]:
        ax.set_visible(False)
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


def roc(fpr, tpr, auc: float, path: str, title: str = "") -> str:
    """A ROC curve with its area under the curve; `title` names the task and its data."""
    figure = _figure(5.0, 5.0)
    ax = figure.subplots()
    ax.set_title(title, fontsize=10)
    ax.plot(fpr, tpr, label=f"AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return _save(figure, path)


def final_accuracy_per_task(results: dict, names: list, path: str) -> str:
    """Final test accuracy of every task, one line per method (`results`: method -> accuracies)."""
    figure = _figure(1.5 + 0.45 * len(names), 4.0)
    ax = figure.subplots()
    for i, (method, accuracies) in enumerate(results.items()):
        ax.plot(range(1, len(names) + 1), accuracies, marker="o", color=f"C{i}", label=method)
    ax.set_xticks(range(1, len(names) + 1), [str(i) for i in range(1, len(names) + 1)])
    ax.set_xlabel("task")
    ax.set_ylabel("test accuracy after the last task")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(figure, path)


def accuracy_against_size(points: dict, path: str) -> str:
    """Average final accuracy against model size, one point per method (`points`: method -> (MB, acc))."""
    figure = _figure(5.5, 4.0)
    ax = figure.subplots()
    for i, (method, (size, accuracy)) in enumerate(points.items()):
        ax.scatter([size], [accuracy], color=f"C{i}", label=method, s=40)
        ax.annotate(method, (size, accuracy), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("model size, MB with masks (log)")
    ax.set_ylabel("average final test accuracy")
    ax.grid(alpha=0.3)
    return _save(figure, path)
