"""Confusion-matrix figure with class names (counts and row-normalised).

Uses matplotlib's object API with the Agg canvas, so it needs no display and
never changes the global pyplot backend.
"""
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ['plot_confusion_matrix', 'save_confusion_matrix_png']


def _draw_matrix(fig: Figure, ax, values: np.ndarray, classes: Sequence[str],
                 title: str, fmt: str, vmax: Optional[float]) -> None:
    """Draw one annotated matrix panel."""
    image = ax.imshow(values, cmap='Blues', vmin=0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=list(classes), rotation=45, ha='right')
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel('Predicted label')
    ax.set_ylabel('True label')
    ax.set_title(title)
    threshold = (vmax if vmax is not None else values.max()) / 2
    for (row, col), value in np.ndenumerate(values):
        ax.text(
            col,
            row,
            format(value, fmt),
            ha='center',
            va='center',
            fontsize=8,
            color='white' if value > threshold else 'black')


def plot_confusion_matrix(cm: np.ndarray,
                          classes: Sequence[str],
                          title: Optional[str] = None) -> Figure:
    """Draw a confusion matrix as counts and as row-normalised percentages.

    Args:
        cm (np.ndarray): (C, C) counts, rows = true class.
        classes (Sequence[str]): C class names for the axes.
        title (str, optional): Figure title.

    Returns:
        matplotlib.figure.Figure: A figure with an Agg canvas attached.
    """
    cm = np.asarray(cm).astype(np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or \
            cm.shape[0] != len(classes):
        raise ValueError(f'cm must be (C, C) with C = {len(classes)} class '
                         f'names, got shape {cm.shape}')
    support = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(
        cm * 100.0, support, out=np.zeros(cm.shape), where=support > 0)
    side = 3.0 + 0.5 * len(classes)
    fig = Figure(figsize=(2 * side + 1, side), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    count_ax, norm_ax = fig.subplots(1, 2)
    _draw_matrix(fig, count_ax, cm, classes, 'Counts', 'd', None)
    _draw_matrix(fig, norm_ax, normalised, classes, 'Row-normalised (%)',
                 '.1f', 100.0)
    if title:
        fig.suptitle(title)
    return fig


def save_confusion_matrix_png(cm: np.ndarray,
                              classes: Sequence[str],
                              path: str,
                              title: Optional[str] = None) -> str:
    """Write :func:`plot_confusion_matrix` to a PNG file.

    Args:
        cm (np.ndarray): (C, C) counts, rows = true class.
        classes (Sequence[str]): C class names.
        path (str): Output file; parent folders are created.
        title (str, optional): Figure title.

    Returns:
        str: ``path``.
    """
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig = plot_confusion_matrix(cm, classes, title)
    fig.savefig(path, format='png')
    return path
