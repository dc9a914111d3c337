"""Figures of a model: the learning curves of a training run and the evaluation panel of a split.

Matplotlib is imported inside the drawing functions, never at module level, and used through
its object-oriented API on the Agg canvas only (no pyplot, no GUI backend, no global figure
state), so importing this module costs nothing and drawing works on machines without a display.
Every PNG is written under a temporary name in its folder and renamed into place: someone
watching ``training.png`` during a long run never opens half a file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DPI = 100
TRAINING_SIZE = (12.0, 3.6)
"""Inches of the learning-curve figure (1200 x 360 px at DPI)."""
EVALUATION_SIZE = (18.0, 10.0)
"""Inches of the evaluation figure (1800 x 1000 px at DPI)."""
GROUPS = ("worst", "median", "best")
ERROR_COLOURS = {
    "true positive": (0.11, 0.62, 0.47),
    "false positive": (0.85, 0.37, 0.01),
    "false negative": (0.46, 0.44, 0.70),
}
"""Colours of the errors panel (colour-blind safe Dark2); correct background is dark grey."""
BACKGROUND = (0.15, 0.15, 0.15)
F1_ISO = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class PatchView:
    """One patch as the evaluation figure shows it."""

    name: str
    group: str
    """One of GROUPS."""
    rgb: np.ndarray
    """float (H, W, 3) in 0..1, already stretched."""
    truth: np.ndarray
    """bool (H, W)."""
    prediction: np.ndarray
    """bool (H, W)."""
    f1: float


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def write_png(fig, path: str | Path) -> Path:
    """Save ``fig`` as ``path`` through a temporary file in the same folder and one rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _values(history: Sequence[dict], key: str) -> list[float]:
    return [float(h.get(key, math.nan)) for h in history]


def draw_training(history: Sequence[dict], path: str | Path) -> Path:
    """Learning curves from a training history (the checkpoint state's ``history``): training and
    validation loss, validation F1 / precision / recall at each epoch's chosen threshold, and
    that threshold, per epoch; the best epoch by F1 is marked."""
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("no epoch in the training history")
    epochs = [int(h["epoch"]) for h in history]
    f1 = _values(history, "val_best_f1")
    best = epochs[int(np.nanargmax(f1))] if not all(math.isnan(v) for v in f1) else None
    fig = _figure(TRAINING_SIZE)
    loss, scores, threshold = fig.subplots(1, 3)
    line = {"marker": "o", "markersize": 3}
    loss.plot(epochs, _values(history, "loss"), label="training", **line)
    loss.plot(epochs, _values(history, "val_loss"), label="validation", **line)
    loss.set(title="loss", ylabel="loss per patch")
    for key, label in (("f1", "F1"), ("precision", "precision"), ("recall", "recall")):
        scores.plot(epochs, _values(history, f"val_best_{key}"), label=label, **line)
    scores.set(title="validation at the chosen threshold", ylim=(0, 1.02))
    threshold.plot(epochs, _values(history, "threshold"), color="black", **line)
    threshold.set(title="chosen threshold", ylim=(0, 1))
    for ax in (loss, scores, threshold):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if best is not None:
            ax.axvline(best, color="grey", linestyle=":", label=f"best epoch {best}")
    loss.legend(fontsize=8)
    scores.legend(fontsize=8, loc="lower right")
    return write_png(fig, path)


def stretch(rgb: np.ndarray) -> np.ndarray:
    """float (H, W, 3) in 0..1: each channel's 2nd-98th percentile stretched over 0..1 (a patch
    of dark reflectances would otherwise look black); non-finite values black."""
    rgb = np.asarray(rgb, np.float64)
    out = np.zeros(rgb.shape)
    for c in range(rgb.shape[-1]):
        channel = rgb[..., c]
        finite = np.isfinite(channel)
        if not finite.any():
            continue
        lo, hi = np.percentile(channel[finite], (2, 98))
        out[..., c] = np.clip((channel - lo) / max(hi - lo, 1e-12), 0, 1)
    return np.nan_to_num(out, nan=0.0)


def error_image(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """float (H, W, 3): true positives, false positives and false negatives in ERROR_COLOURS,
    correct background in BACKGROUND."""
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    out = np.empty((*truth.shape, 3))
    out[...] = BACKGROUND
    out[truth & prediction] = ERROR_COLOURS["true positive"]
    out[~truth & prediction] = ERROR_COLOURS["false positive"]
    out[truth & ~prediction] = ERROR_COLOURS["false negative"]
    return out


def _f1_iso_lines(ax) -> None:
    for f in F1_ISO:
        recall = np.linspace(f / (2 - f) + 1e-6, 1, 200)
        precision = f * recall / (2 * recall - f)
        ax.plot(recall, precision, color="grey", alpha=0.35, linewidth=0.8)
        ax.annotate(f"F1 {f:.1f}", (1.0, precision[-1]), fontsize=7, color="grey",
                    xytext=(2, 0), textcoords="offset points", va="center")


def _draw_curve(ax, curve: tuple[np.ndarray, np.ndarray], point: tuple[float, float, float],
                ) -> None:
    recall, precision = curve
    _f1_iso_lines(ax)
    ax.plot(recall, precision, color="tab:blue", linewidth=1.8, label="this split")
    r, p, t = point
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    ax.plot([r], [p], "o", color="tab:red", markersize=8,
            label=f"threshold {t:.3f}: P {p:.3f}, R {r:.3f}, F1 {f1:.3f}")
    ax.set(xlim=(0, 1.0), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title="precision-recall curve", aspect="equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_patches(subfig, patches: Sequence[PatchView], per_row: int = 2) -> None:
    from matplotlib.patches import Patch

    groups = [[p for p in patches if p.group == g] for g in GROUPS]
    groups = [(g, ps) for g, ps in zip(GROUPS, groups, strict=True) if ps]
    rows_per_group = max(math.ceil(len(ps) / per_row) for _, ps in groups)
    axes = subfig.subplots(rows_per_group * len(groups), 4 * per_row, squeeze=False)
    for ax in axes.flat:
        _bare(ax)
        ax.set_visible(False)
    for gi, (group, members) in enumerate(groups):
        for i, patch in enumerate(members):
            row = gi * rows_per_group + i // per_row
            col = 4 * (i % per_row)
            panels = (patch.rgb, patch.truth, patch.prediction,
                      error_image(patch.truth, patch.prediction))
            for j, (image, label) in enumerate(zip(panels, ("", "truth", "prediction", "errors"),
                                                   strict=True)):
                ax = axes[row, col + j]
                ax.set_visible(True)
                gray = image.ndim == 2
                ax.imshow(np.asarray(image, float), cmap="gray" if gray else None, vmin=0,
                          vmax=1, interpolation="nearest")
                ax.set_title(label, fontsize=7)
            axes[row, col].set_title(f"{patch.name}\nF1 {patch.f1:.2f}", fontsize=7)
            if i == 0:
                axes[row, col].set_ylabel(group, fontsize=10, fontweight="bold")
    handles = [Patch(color=c, label=n) for n, c in ERROR_COLOURS.items()]
    subfig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)


def draw_evaluation(
    path: str | Path,
    title: str,
    curve: tuple[np.ndarray, np.ndarray],
    point: tuple[float, float, float],
    patches: Sequence[PatchView],
) -> Path:
    """The evaluation figure of a split: (a) the precision-recall curve (``curve``: recall,
    precision) with F1 iso-lines and ``point`` (recall, precision, threshold) marked; (b) the
    patches as RGB / truth / prediction / errors, grouped as GROUPS; ``title`` on top."""
    fig = _figure(EVALUATION_SIZE)
    fig.suptitle(title, fontsize=13)
    left, right = fig.subfigures(1, 2, width_ratios=[1, 2.6])
    _draw_curve(left.subplots(), curve, point)
    if patches:
        _draw_patches(right, patches)
    return write_png(fig, path)
