"""Text tables and JSON output of the expression metrics."""
import os.path as osp
import statistics
from typing import Any, Dict, List, Mapping, Sequence

import mmengine
import numpy as np
import torch

from dmue_mm.utils.fileio import atomic_write

__all__ = [
    'format_table', 'format_markdown_table', 'format_report', 'to_builtin',
    'dump_metrics', 'spread'
]

#: summary entries of :func:`format_report`: (key, label, format)
SUMMARY_ITEMS = (
    ('top1', 'top-1 (%)', '.2f'),
    ('mean_class_acc', 'mean class accuracy (%)', '.2f'),
    ('macro_f1', 'macro F1 (%)', '.2f'),
    ('nll', 'NLL (nats)', '.4f'),
    ('ece', 'ECE (%)', '.2f'),
    ('temperature', 'temperature T', '.4f'),
    ('nll_ts', 'NLL after T-scaling (nats)', '.4f'),
    ('ece_ts', 'ECE after T-scaling (%)', '.2f'),
    ('soft_nll', 'soft NLL vs votes (nats)', '.4f'),
    ('kl', 'KL(votes || pred) (nats)', '.4f'),
    ('soft_nll_ts', 'soft NLL after T-scaling (nats)', '.4f'),
    ('kl_ts', 'KL after T-scaling (nats)', '.4f'),
)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Align string cells in columns: first column left, others right."""
    widths = [
        max(len(str(row[col])) for row in [header, *rows])
        for col in range(len(header))
    ]
    lines = []
    for row in [header, *rows]:
        cells = [str(row[0]).ljust(widths[0])] + [
            str(cell).rjust(width) for cell, width in zip(row[1:], widths[1:])
        ]
        lines.append('  '.join(cells))
    lines.insert(1, '-' * len(lines[0]))
    return '\n'.join(lines)


def format_markdown_table(header: Sequence[str],
                          rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of string cells (the benchmarks' README tables)."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(r) + ' |' for r in rows])


def spread(values: Sequence[float]) -> Dict[str, float]:
    """Median, min and max of repeated measurements (the benchmarks' JSON
    and ratio cells)."""
    return dict(
        median=statistics.median(values), min=min(values), max=max(values))


def format_report(report: Mapping[str, Any], classes: Sequence[str]) -> str:
    """Summary, per-class P/R/F1 table and confusion matrix as text.

    Args:
        report (Mapping): Unprefixed results of
            :class:`~dmue_mm.evaluation.ExpressionMetric` (``top1``,
            ``precision_classwise``, ``confusion_matrix``, ...).
        classes (Sequence[str]): Class names.

    Returns:
        str: A multi-line report.
    """
    summary = format_table(
        ['metric', 'value'],
        [[label, format(report[key], fmt)]
         for key, label, fmt in SUMMARY_ITEMS if key in report])
    columns = zip(*(report[f'{key}_classwise']
                    for key in ('precision', 'recall', 'f1-score')))
    per_class = []
    for name, values, support in zip(classes, columns,
                                     report['support_classwise']):
        per_class.append([name, *(f'{v:.2f}' for v in values), str(support)])
    per_class.append([
        'macro (classes with samples)', f'{report["macro_precision"]:.2f}',
        f'{report["mean_class_acc"]:.2f}', f'{report["macro_f1"]:.2f}',
        str(int(np.sum(report['support_classwise'])))
    ])
    scores = format_table(
        ['class', 'precision', 'recall', 'f1-score', 'support'], per_class)
    rows = np.asarray(report['confusion_matrix']).tolist()
    matrix = format_table(['true \\ predicted', *classes],
                          [[name, *map(str, row)]
                           for name, row in zip(classes, rows)])
    return '\n\n'.join([
        summary, 'Per-class scores (%)\n' + scores,
        'Confusion matrix (rows: true class, columns: prediction)\n' + matrix
    ])


def to_builtin(value: Any) -> Any:
    """Convert tensors, arrays and numpy scalars (nested) to JSON types."""
    if isinstance(value, Mapping):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
    return value


def dump_metrics(metrics: Dict[str, Any], path: str) -> List[str]:
    """Write metrics with builtin types; the format follows the suffix.

    Args:
        metrics (dict): Metric name -> value (scalars, lists, arrays).
        path (str): ``.json``, ``.yaml``/``.yml`` or ``.pkl``/``.pickle``.

    Returns:
        list[str]: The metric names written.
    """
    data = to_builtin(metrics)
    suffix = osp.splitext(path)[1].lower().lstrip('.')
    file_format = dict(yml='yaml', pickle='pkl').get(suffix, suffix)
    kwargs = dict(indent=2) if file_format == 'json' else {}
    # written under a temporary name, so the format is given explicitly
    atomic_write(path, lambda tmp: mmengine.dump(
        data, tmp, file_format=file_format, **kwargs))
    return list(data)
