"""Report figures (matplotlib, Agg): confusion matrices and reliability diagrams."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(cm: np.ndarray, labels: Sequence[str], title: str, path: Path) -> Path:
    plt = _plt()
    cm = np.asarray(cm)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * n, 0.8 + 0.55 * n), dpi=110)
    row = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, np.maximum(row, 1))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.6 else "black")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def multilabel_confusion_png(cms: np.ndarray, labels: Sequence[str], title: str, path: Path) -> Path:
    plt = _plt()
    n = max(len(labels), 1)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), dpi=110, squeeze=False)
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k >= len(labels):
            ax.axis("off")
            continue
        cm = np.asarray(cms[k])
        ax.imshow(cm / max(cm.sum(), 1), cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8)
        ax.set_xticks([0, 1], ["pred no", "pred yes"], fontsize=7)
        ax.set_yticks([0, 1], ["no", "yes"], fontsize=7)
        ax.set_title(labels[k], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def reliability_png(before: dict, after: dict, title: str, path: Path) -> Path:
    """Two reliability curves (before / after temperature scaling) with the diagonal."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.8), dpi=110)
    for ax, rel, name in ((axes[0], before, "before scaling"), (axes[1], after, "after scaling")):
        edges = np.asarray(rel["edges"])
        centers = (edges[:-1] + edges[1:]) / 2
        acc = np.asarray(rel["accuracy"], dtype=float)
        cnt = np.asarray(rel["count"])
        ok = cnt > 0
        ax.bar(centers[ok], acc[ok], width=edges[1] - edges[0], edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect")
        ax.plot(np.asarray(rel["confidence"])[ok], acc[ok], "o-", color="tab:red", markersize=3,
                label="mean confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"{name}: ECE {rel['ece']:.3f}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
