"""The one-page summary of a mapped scene (``jobs.infer --figure``): the preview, the histogram
of the landslides' areas and the histogram of the probabilities with the threshold.

Matplotlib is imported only when the figure is drawn, and only its object-oriented API on the
Agg canvas is used (no pyplot, no display needed).
"""

from pathlib import Path

import numpy as np

from common.errors import OutputError
from products.histograms import probability_histogram
from products.polygons import Landslides
from tiler.grid import Grid

DPI = 100
SIZE = (15.0, 7.0)
"""Inches of the summary (1500 x 700 px at DPI)."""


def _draw_areas(ax, areas_m2: np.ndarray) -> None:
    ax.set(title="landslide areas", xlabel="area (m², log scale)", ylabel="landslides")
    if len(areas_m2) == 0:
        ax.text(0.5, 0.5, "no landslide found", ha="center", va="center",
                transform=ax.transAxes)
        return
    lo, hi = float(areas_m2.min()), float(areas_m2.max())
    edges = np.geomspace(lo / 1.2, hi * 1.2, 25)
    ax.hist(areas_m2, bins=edges, color="tab:orange", edgecolor="white")
    ax.set_xscale("log")
    ax.axvline(float(np.median(areas_m2)), color="black", linestyle=":",
               label=f"median {np.median(areas_m2):,.0f} m²")
    ax.legend(fontsize=8)


def _draw_probabilities(ax, counts: np.ndarray, edges: np.ndarray, threshold: float) -> None:
    total = counts.sum()
    ax.hist(edges[:-1], bins=edges, weights=counts, log=True, color="tab:blue")
    above = counts[edges[:-1] >= threshold].sum() / total if total else 0.0
    ax.axvline(threshold, color="tab:red", linewidth=1.5,
               label=f"threshold {threshold:.3f}: {above:.2%} of the pixels at or above")
    ax.set(title="probabilities of the valid pixels", xlabel="landslide probability",
           ylabel="pixels (log scale)", xlim=(0, 1))
    ax.legend(fontsize=8, loc="upper right")


def write_summary_figure(preview: Path, predictions: str | Path, grid: Grid, found: Landslides,
                         threshold: float, path: Path,
                         tags: dict[str, str] | None = None) -> Path:
    """Draw the summary of a scene's map as the PNG ``path``; ``preview`` is the preview PNG
    already written (products.preview), ``predictions`` the prediction store, ``tags`` PNG text
    (the provenance)."""
    import matplotlib.image
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts, edges = probability_histogram(predictions, grid)
    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    grid_spec = fig.add_gridspec(2, 2, width_ratios=[1.25, 1])
    image = fig.add_subplot(grid_spec[:, 0])
    image.imshow(matplotlib.image.imread(preview), interpolation="antialiased")
    image.set_axis_off()
    image.set_title("preview (landslides outlined)")
    _draw_areas(fig.add_subplot(grid_spec[0, 1]), found.areas_m2)
    _draw_probabilities(fig.add_subplot(grid_spec[1, 1]), counts, edges, threshold)
    scene_ha = grid.width * grid.height * abs(grid.transform[0] * grid.transform[4]) / 1e4
    fig.suptitle(f"{len(found.polygons)} landslides, {found.total_area_m2 / 1e4:,.2f} ha, on a "
                 f"{grid.width} x {grid.height} px scene of {scene_ha:,.0f} ha")
    try:
        fig.savefig(path, format="png", dpi=DPI, facecolor="white", metadata=tags or {})
    except OSError as exc:
        raise OutputError(f"{path}: could not write the summary figure "
                          f"({exc.strerror or exc})") from exc
    return path
