"""Evaluation of expression recognition: accuracy, per-class scores, the
confusion matrix (table and PNG), calibration and vote-distribution metrics.

Importing the package registers :class:`ExpressionMetric` in MMPretrain's
``METRICS`` registry.
"""
from .calibration import (calibration_bins, crossfit_temperature,
                          expected_calibration_error, fit_temperature,
                          kl_divergence, log_probabilities, nll,
                          normalise_distribution, scale_temperature, soft_nll)
from .classification import (classification_report, confusion_matrix,
                             per_class_scores)
from .metrics import ExpressionMetric
from .report import dump_metrics, format_report, format_table, to_builtin
from .test_tool import (add_expression_metric, resolve_out_item,
                        set_confusion_png)
from .visualization import plot_confusion_matrix, save_confusion_matrix_png

__all__ = [
    'ExpressionMetric', 'confusion_matrix', 'per_class_scores',
    'classification_report', 'log_probabilities', 'nll', 'calibration_bins',
    'expected_calibration_error', 'scale_temperature', 'fit_temperature',
    'crossfit_temperature', 'normalise_distribution', 'soft_nll',
    'kl_divergence', 'plot_confusion_matrix', 'save_confusion_matrix_png',
    'format_table', 'format_report', 'to_builtin', 'dump_metrics',
    'add_expression_metric', 'resolve_out_item', 'set_confusion_png'
]
