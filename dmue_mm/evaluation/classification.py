"""Hard-label metrics of single-label expression recognition.

Everything is derived from one confusion matrix ``cm`` whose row ``i`` counts
the samples of true class ``i`` and column ``j`` the predictions of class
``j`` (counted by MMPretrain's ``ConfusionMatrix.calculate``). Percentages
(0-100) as in MMPretrain.

The per-class ratios are computed here from the matrix in float64:
MMPretrain's ``SingleLabelMetric.calculate`` computes them in float32, and
scikit-learn's ``precision_recall_fscore_support`` (1-3 s to import) orders
the F1 arithmetic differently (up to 2 ulp); the tests check both agree.

Undefined ratios (a class that is never predicted has no precision, a class
without samples has no recall) are reported as ``0`` and never produce NaN or
division warnings. The macro averages (mean class accuracy, macro precision
and F1) run over the classes that have samples in the evaluated set: an
absent class has no accuracy to average, while predictions wrongly made
*into* it still lower the recall of the true classes.
"""
from typing import Dict, Union

import numpy as np
import torch
from mmpretrain.evaluation import ConfusionMatrix

__all__ = [
    'to_numpy', 'confusion_matrix', 'per_class_scores', 'classification_report'
]

ArrayLike = Union[torch.Tensor, np.ndarray, list, tuple]


def to_numpy(value: ArrayLike, dtype=None) -> np.ndarray:
    """Convert a tensor, array or sequence to a numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with ``0`` where ``den == 0`` (no warning)."""
    num = num.astype(np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def confusion_matrix(pred_label: ArrayLike, gt_label: ArrayLike,
                     num_classes: int) -> np.ndarray:
    """Count (true class, predicted class) pairs.

    Args:
        pred_label (array-like): Predicted class indices, shape (N, ).
        gt_label (array-like): True class indices, shape (N, ).
        num_classes (int): Number of classes C.

    Returns:
        np.ndarray: int64 (C, C) matrix, rows = true class, columns =
        predicted class.

    Raises:
        ValueError: If the shapes differ or a label is outside ``[0, C)``.
    """
    pred = to_numpy(pred_label, np.int64).reshape(-1)
    gt = to_numpy(gt_label, np.int64).reshape(-1)
    if pred.shape != gt.shape:
        raise ValueError(f'pred_label has {pred.size} items but gt_label '
                         f'has {gt.size}')
    for name, labels in (('pred_label', pred), ('gt_label', gt)):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.size:
            raise ValueError(
                f'{name} holds labels outside [0, {num_classes}): '
                f'{sorted(set(bad.tolist()))}; check num_classes and the '
                'dataset labels')
    return ConfusionMatrix.calculate(
        torch.from_numpy(pred), torch.from_numpy(gt),
        num_classes=num_classes).numpy().astype(np.int64)


def per_class_scores(cm: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-class precision, recall, F1 (percent) and support of a matrix.

    Args:
        cm (np.ndarray): (C, C) confusion matrix, rows = true class.

    Returns:
        dict: ``precision``, ``recall``, ``f1-score`` (float64, percent) and
        ``support`` (int64), each of shape (C, ). Undefined values are 0.
    """
    cm = np.asarray(cm)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_ratio(tp, predicted) * 100
    recall = _safe_ratio(tp, support) * 100
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    return {
        'precision': precision,
        'recall': recall,
        'f1-score': f1,
        'support': support.astype(np.int64),
    }


def classification_report(cm: np.ndarray) -> Dict[str, object]:
    """Top-1, mean class accuracy, macro P/F1 and per-class scores.

    Args:
        cm (np.ndarray): (C, C) confusion matrix, rows = true class.

    Returns:
        dict: ``top1``, ``mean_class_acc`` (macro recall), ``macro_precision``
        and ``macro_f1`` (floats, percent, macro averages over classes with
        samples) and the per-class arrays of :func:`per_class_scores`.
    """
    cm = np.asarray(cm)
    scores = per_class_scores(cm)
    present = scores['support'] > 0
    total = cm.sum()

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    return {
        'top1': float(np.trace(cm) / total * 100) if total else 0.0,
        'mean_class_acc': macro(scores['recall']),
        'macro_precision': macro(scores['precision']),
        'macro_f1': macro(scores['f1-score']),
        **scores,
    }
