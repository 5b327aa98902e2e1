"""Probability scores: NLL, expected calibration error, temperature scaling
and divergences from annotator vote distributions.

All functions take the predicted class probabilities (``pred_score`` of
MMPretrain's data samples, i.e. softmax outputs, shape (N, C)) or their
logarithm, compute in float64 and return Python floats. Logarithms of
probabilities are clamped at the smallest positive float64 so that a
probability of exactly 0 costs about 708 nats instead of ``inf``.

Temperature scaling works on log-probabilities: ``softmax(log p / T)``. For a
softmax head this equals scaling the logits (the per-row constant cancels),
and it also applies to averaged scores such as flip test-time augmentation.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    'log_probabilities', 'nll', 'calibration_bins',
    'expected_calibration_error', 'scale_temperature', 'fit_temperature',
    'crossfit_temperature', 'normalise_distribution', 'soft_nll',
    'kl_divergence'
]

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]
TINY = torch.finfo(torch.float64).tiny
#: search interval of :func:`fit_temperature`
TEMPERATURE_BOUNDS = (1e-2, 1e2)


def _as_float64(value: ArrayLike) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64)
    return torch.as_tensor(np.asarray(value), dtype=torch.float64)


def _as_labels(gt_label: ArrayLike, num_samples: int) -> torch.Tensor:
    labels = (gt_label.detach().cpu() if isinstance(gt_label, torch.Tensor)
              else torch.as_tensor(np.asarray(gt_label))).long().reshape(-1)
    if labels.numel() != num_samples:
        raise ValueError(f'gt_label has {labels.numel()} items but the '
                         f'scores have {num_samples} rows')
    return labels


def log_probabilities(pred_score: ArrayLike,
                      atol: float = 1e-2) -> torch.Tensor:
    """Validate probabilities and return their normalised logarithm.

    Args:
        pred_score (array-like): (N, C) class probabilities.
        atol (float): Allowed deviation of a row sum from 1 (fp16/bf16
            inference is not exact); rows are renormalised.

    Returns:
        torch.Tensor: (N, C) float64 log-probabilities whose rows
        log-sum-exp to 0.

    Raises:
        ValueError: If the scores are not 2-D, negative or do not sum to 1,
            which means the head does not output softmax probabilities.
    """
    prob = _as_float64(pred_score)
    if prob.ndim != 2:
        raise ValueError(f'pred_score must be (N, C), got shape '
                         f'{tuple(prob.shape)}')
    sums = prob.sum(dim=1)
    if (prob < 0).any() or ((sums - 1).abs() > atol).any():
        raise ValueError(
            'pred_score rows must be probabilities (non-negative, summing to '
            f'1), got row sums in [{sums.min():.4g}, {sums.max():.4g}]; '
            'the probability metrics need a softmax classification head')
    log_p = prob.clamp_min(TINY).log()
    return log_p - log_p.logsumexp(dim=1, keepdim=True)


def nll(log_p: torch.Tensor, gt_label: ArrayLike) -> float:
    """Mean negative log-likelihood (nats) of the true labels.

    Args:
        log_p (torch.Tensor): (N, C) log-probabilities.
        gt_label (array-like): (N, ) true class indices.

    Returns:
        float: ``-mean_i log p_i[y_i]``.
    """
    labels = _as_labels(gt_label, log_p.size(0))
    return float(-log_p.gather(1, labels[:, None]).mean())


def calibration_bins(prob: ArrayLike,
                     gt_label: ArrayLike,
                     num_bins: int = 15) -> Dict[str, np.ndarray]:
    """Reliability statistics in equal-width confidence bins.

    The confidence of a sample is its top probability; bin ``b`` holds the
    confidences in ``(b / M, (b + 1) / M]`` (bin 0 also holds 0).

    Args:
        prob (array-like): (N, C) probabilities.
        gt_label (array-like): (N, ) true class indices.
        num_bins (int): Number of bins M.

    Returns:
        dict: ``count`` (M, ) int64, ``accuracy`` and ``confidence`` (M, )
        float64 means per bin (0 for empty bins).
    """
    if num_bins < 1:
        raise ValueError(f'num_bins must be >= 1, got {num_bins}')
    prob = _as_float64(prob)
    labels = _as_labels(gt_label, prob.size(0))
    confidence, pred = prob.max(dim=1)
    correct = (pred == labels).to(torch.float64)
    index = (torch.ceil(confidence * num_bins).long() - 1).clamp(
        0, num_bins - 1)
    count = torch.bincount(index, minlength=num_bins)
    denom = count.clamp_min(1).to(torch.float64)

    def bin_mean(values: torch.Tensor) -> np.ndarray:
        sums = torch.zeros(num_bins, dtype=torch.float64)
        return (sums.index_add_(0, index, values) / denom).numpy()

    return {
        'count': count.numpy(),
        'accuracy': bin_mean(correct),
        'confidence': bin_mean(confidence),
    }


def expected_calibration_error(prob: ArrayLike,
                               gt_label: ArrayLike,
                               num_bins: int = 15) -> float:
    """Expected calibration error in percent (0-100).

    ``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|`` over the equal-width
    bins of :func:`calibration_bins`.

    Args:
        prob (array-like): (N, C) probabilities.
        gt_label (array-like): (N, ) true class indices.
        num_bins (int): Number of bins. Defaults to 15.

    Returns:
        float: The ECE in percent.
    """
    bins = calibration_bins(prob, gt_label, num_bins)
    total = bins['count'].sum()
    if total == 0:
        return 0.0
    gap = np.abs(bins['accuracy'] - bins['confidence'])
    return float((bins['count'] * gap).sum() / total * 100)


def scale_temperature(log_p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Return ``log softmax(log_p / T)``."""
    if not temperature > 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')
    return torch.log_softmax(log_p / temperature, dim=1)


def fit_temperature(log_p: torch.Tensor,
                    gt_label: ArrayLike,
                    bounds: Tuple[float, float] = TEMPERATURE_BOUNDS,
                    tol: float = 1e-6) -> float:
    """Temperature ``T`` minimising the NLL of ``softmax(log_p / T)``.

    The NLL is convex in ``1 / T``, hence unimodal in ``log T``, where
    SciPy's bounded Brent search (``scipy.optimize.minimize_scalar``) finds
    the minimum to ``tol`` (relative precision of ``T``). An optimum outside
    ``bounds`` returns the nearest bound to within ``tol`` (e.g. a set
    classified perfectly wants ``T -> 0``).

    Args:
        log_p (torch.Tensor): (N, C) log-probabilities.
        gt_label (array-like): (N, ) true class indices.
        bounds (tuple): Search interval of ``T``. Defaults to (0.01, 100).
        tol (float): Width of the final interval in ``log T``.

    Returns:
        float: The fitted temperature.
    """
    if log_p.size(0) == 0:
        raise ValueError('cannot fit a temperature on 0 samples')
    from scipy.optimize import minimize_scalar  # 0.7 s import: when used
    labels = _as_labels(gt_label, log_p.size(0))

    def objective(log_t: float) -> float:
        return nll(scale_temperature(log_p, math.exp(log_t)), labels)

    low, high = math.log(bounds[0]), math.log(bounds[1])
    result = minimize_scalar(
        objective, bounds=(low, high), method='bounded',
        options=dict(xatol=tol))
    # the bounded search never evaluates the ends, and stops anywhere on the
    # numerically flat NLL of a separable set: a bound that is at least as
    # good wins (ties: the smaller T)
    _, log_t = min((result.fun, result.x), (objective(low), low),
                   (objective(high), high))
    return math.exp(log_t)


def crossfit_temperature(log_p: torch.Tensor, gt_label: ArrayLike,
                         fold: ArrayLike) -> Tuple[torch.Tensor, list]:
    """Two-fold cross-fitted temperature scaling.

    Each fold is scaled by the temperature fitted on the other fold, so every
    sample gets an out-of-sample calibrated score.

    Args:
        log_p (torch.Tensor): (N, C) log-probabilities.
        gt_label (array-like): (N, ) true class indices.
        fold (array-like): (N, ) fold index of each sample, 0 or 1.

    Returns:
        tuple: The (N, C) calibrated log-probabilities and the temperatures
        ``[T fitted on fold 0, T fitted on fold 1]``.

    Raises:
        ValueError: If a fold is empty.
    """
    labels = _as_labels(gt_label, log_p.size(0))
    fold = torch.as_tensor(np.asarray(fold)).reshape(-1)
    masks = [fold == 0, fold == 1]
    if not all(mask.any() for mask in masks):
        raise ValueError('cross-fitted temperature scaling needs samples in '
                         'both folds')
    temperatures = [fit_temperature(log_p[m], labels[m]) for m in masks]
    calibrated = torch.empty_like(log_p)
    for held_out, temperature in ((masks[1], temperatures[0]),
                                  (masks[0], temperatures[1])):
        calibrated[held_out] = scale_temperature(log_p[held_out], temperature)
    return calibrated, temperatures


def normalise_distribution(gt_score: ArrayLike,
                           num_classes: Optional[int] = None) -> torch.Tensor:
    """Turn vote counts or soft labels into rows that sum to 1.

    Args:
        gt_score (array-like): (N, C) non-negative votes or probabilities.
        num_classes (int, optional): Expected C.

    Returns:
        torch.Tensor: (N, C) float64 distributions.

    Raises:
        ValueError: On a wrong shape, negative entries or an all-zero row.
    """
    votes = _as_float64(gt_score)
    if votes.ndim != 2 or (num_classes is not None
                           and votes.size(1) != num_classes):
        raise ValueError(
            f'gt_score must be (N, {num_classes or "C"}) vote counts or '
            f'probabilities, got shape {tuple(votes.shape)}')
    sums = votes.sum(dim=1, keepdim=True)
    if (votes < 0).any() or (sums <= 0).any():
        raise ValueError('gt_score rows must be non-negative with a positive '
                         'sum (vote counts or a distribution)')
    return votes / sums


def soft_nll(target: torch.Tensor, log_p: torch.Tensor) -> float:
    """Cross-entropy ``-mean_i sum_c v_ic log p_ic`` (nats).

    Args:
        target (torch.Tensor): (N, C) vote distributions (rows sum to 1).
        log_p (torch.Tensor): (N, C) predicted log-probabilities.
    """
    return float(-(target * log_p).sum(dim=1).mean())


def kl_divergence(target: torch.Tensor, log_p: torch.Tensor) -> float:
    """``mean_i KL(v_i || p_i)`` in nats, with ``0 log 0 = 0``.

    Args:
        target (torch.Tensor): (N, C) vote distributions (rows sum to 1).
        log_p (torch.Tensor): (N, C) predicted log-probabilities.
    """
    log_v = torch.where(target > 0,
                        target.clamp_min(TINY).log(), torch.zeros_like(target))
    return float((target * (log_v - log_p)).sum(dim=1).mean())
