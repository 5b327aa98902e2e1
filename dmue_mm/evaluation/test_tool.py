"""What ``tools/test.py`` does beyond MMPretrain's tool: pick the output of
``--out``, add :class:`ExpressionMetric` to plain single-label evaluators and
tell it where to write the confusion-matrix PNG."""
import os.path as osp
from typing import Any, List, Optional

from mmengine.config import Config, ConfigDict

from ..utils.errors import CLIError
from .metrics import ExpressionMetric

__all__ = [
    'PLAIN_SINGLE_LABEL_METRICS', 'resolve_out_item', 'add_expression_metric',
    'set_confusion_png'
]

#: evaluators that ``add_expression_metric`` extends (with or without the
#: ``mmpretrain.`` scope)
PLAIN_SINGLE_LABEL_METRICS = ('Accuracy', 'SingleLabelMetric',
                              'ConfusionMatrix')
PICKLE_SUFFIXES = ('.pkl', '.pickle')


def resolve_out_item(out: Optional[str],
                     out_item: Optional[str]) -> Optional[str]:
    """Decide what ``--out`` receives.

    ``--out-item`` wins when given; otherwise a ``.json`` file gets the
    metrics and any other file the pickled predictions (MMPretrain's
    behaviour).

    Args:
        out (str, optional): The ``--out`` file.
        out_item (str, optional): ``'metrics'``, ``'pred'`` or None.

    Returns:
        str | None: ``'metrics'``, ``'pred'``, or None without ``--out``.

    Raises:
        CLIError: ``--out-item`` without ``--out``, or predictions to a file
            that is not ``.pkl``/``.pickle``.
    """
    if out is None:
        if out_item is not None:
            raise CLIError('--out-item needs --out FILE')
        return None
    item = out_item or ('metrics' if out.endswith('.json') else 'pred')
    if item == 'pred' and not out.endswith(PICKLE_SUFFIXES):
        raise CLIError(f'--out {out!r}: predictions are pickled, use a .pkl '
                       'file, or a .json file (or --out-item metrics) for the '
                       'metrics')
    return item


def _metric_type(metric: Any) -> str:
    return str(metric.get('type', '')).split('.')[-1]


def add_expression_metric(cfg: Config) -> bool:
    """Append ``ExpressionMetric`` to a plain single-label test evaluator.

    When every metric of ``cfg.test_evaluator`` is one of
    :data:`PLAIN_SINGLE_LABEL_METRICS`, an ``ExpressionMetric`` is appended
    (the existing metrics and their keys stay). Any other evaluator, or one
    that already has an ``ExpressionMetric``, is left unchanged.

    Args:
        cfg (Config): The config; ``test_evaluator`` is replaced, not
            mutated, since configs often share it with ``val_evaluator``.

    Returns:
        bool: Whether the metric was added.
    """
    evaluator = cfg.get('test_evaluator')
    if evaluator is None:
        return False
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        return False  # a custom Evaluator type: leave it alone
    metrics: List[Any] = list(evaluator) if isinstance(
        evaluator, (list, tuple)) else [evaluator]
    if not metrics or not all(
            isinstance(m, dict)
            and _metric_type(m) in PLAIN_SINGLE_LABEL_METRICS
            for m in metrics):
        return False
    cfg.test_evaluator = [*metrics, ConfigDict(type='ExpressionMetric')]
    return True


def set_confusion_png(runner, path: Optional[str]) -> List[str]:
    """Point the runner's ``ExpressionMetric`` at a confusion-matrix PNG.

    Args:
        runner (Runner): A built runner.
        path (str, optional): ``--cm-png``. Without it, a metric that has no
            ``confusion_png`` of its own writes
            ``<work_dir>/<timestamp>/confusion_matrix.png``.

    Returns:
        list[str]: The PNG paths that will be written.
    """
    metrics = [
        m for m in runner.test_evaluator.metrics
        if isinstance(m, ExpressionMetric)
    ]
    if not metrics:
        if path is not None:
            raise CLIError(
                '--cm-png needs an ExpressionMetric in test_evaluator: add '
                "dict(type='ExpressionMetric') to the config")
        return []
    paths = []
    for index, metric in enumerate(metrics):
        if path is not None or metric.confusion_png is None:
            target = path or osp.join(runner.log_dir, 'confusion_matrix.png')
            if index:
                stem, ext = osp.splitext(target)
                target = f'{stem}_{index}{ext}'
            metric.confusion_png = target
        paths.append(metric.confusion_png)
    return paths
