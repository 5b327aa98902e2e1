"""Cross-entropy vs. label smoothing vs. DMUE under label noise and
annotation ambiguity, on scikit-learn's digits (offline, ships in the wheel).

Three methods, one backbone, one recipe, the same data within a seed:

* ``ce``: MMPretrain ``ImageClassifier`` + ``LinearClsHead``
  (``CrossEntropyLoss``);
* ``ls``: the same with MMPretrain's ``LabelSmoothLoss`` (0.1, ``original``
  mode);
* ``dmue``: the plugin's ``DMUEClassifier`` + ``DMUEHead`` (w 0.5, T 1.2,
  dropout 0.5, BN-neck; gamma calibrated, ramp length = epochs / 5).

Backbone: MMPretrain ``ResNet_CIFAR`` depth 18 at width 8 (stages 8/16/32/64
channels, strides 1/1/2/1, so 8x8 digits give a 4x4 last stage and 64-d
features), 1 input channel, from scratch.

Base task: 30 training images per class (300 in all), every other image of
the 1797 is a test image; the small training set and the short schedule
leave clean cross-entropy clearly below 100%.

Settings (one data draw per seed, shared by the three methods):

* ``noise{r}``: a fraction ``r`` of the training labels (exactly
  ``round(r N)``) replaced by a uniformly drawn *other* class;
* ``ambiguous``: a fraction of the training images replaced by the blend
  ``lam * x_a + (1 - lam) * x_b`` with a random training image ``x_b`` of the
  partner class ``b`` of ``a``, labelled ``a`` with probability ``lam`` and
  ``b`` otherwise. Partners: the classes are paired greedily by the distance
  of their mean images over the whole digits set (closest pair first), a
  fixed pairing printed with the results.

Metrics: top-1, NLL and ECE on the clean test images; soft NLL on blended
test images (every test image blended with a test image of its partner
class) against the true ``(lam, 1 - lam)``; AUROC of picking out the affected
(flipped or blended) training images with the final model's probability of
the given label (every method) and with DMUE's uncertainty score ``sigma``
averaged over the last quarter of training (train mode, as it weights the
loss); for DMUE also how often the latent distribution of an affected image
peaks at its hidden class.

Usage::

    python benchmarks/noisy_labels.py                # full: 5 seeds
    python benchmarks/noisy_labels.py --quick        # 1 seed, 10 epochs

Results: ``results.md`` (the tables), ``noisy_labels.json`` (every per-seed
number), ``noise.png``, ``ambiguity.png``, ``uncertainty.png`` in
``--out-dir`` (default ``benchmarks/results/noisy_labels``).
"""
import argparse
import logging
import math
import os
import os.path as osp
import platform
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = [
    'Recipe', 'Setting', 'TaskData', 'symmetric_noise', 'pair_classes',
    'blend', 'make_ambiguous', 'blended_test_set', 'auroc', 'mean_std',
    'round_significant', 'random_shift', 'model_cfg', 'build_model',
    'measure_sp', 'prepare_data', 'train_model', 'run_one', 'summarise',
    'paired_differences', 'format_tables', 'plot_results', 'main'
]

METHODS = ('ce', 'ls', 'dmue')
METHOD_NAMES = {'ce': 'CE', 'ls': 'CE + LS 0.1', 'dmue': 'DMUE'}
NUM_CLASSES = 10
DEFAULT_OUT = osp.join(osp.dirname(osp.abspath(__file__)), 'results',
                       'noisy_labels')


@dataclass(frozen=True)
class Recipe:
    """Everything shared by the three methods.

    Args:
        epochs (int): Training epochs.
        batch_size (int): Batch size (plain shuffling; digits are balanced).
        lr (float): Adam learning rate, cosine-annealed per epoch to 0.
        weight_decay (float): Adam's coupled L2 (as the original DMUE).
        per_class (int): Training images per class.
        max_shift (int): Random translation augmentation in pixels.
        label_smooth (float): Label smoothing of the ``ls`` method.
        blend_fraction (float): Fraction of blended training images in the
            ``ambiguous`` setting.
        lam_range (tuple): Range of the uniform blend weight ``lam``.
        sp_weight (float, optional): DMUE's gamma; None: calibrated.
        sp_target (float): Calibration target of ``gamma * L_sp`` at init.
        score_fraction (float): Last fraction of the epochs over which DMUE's
            per-sample uncertainty score is averaged.
    """
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    per_class: int = 30
    max_shift: int = 1
    label_smooth: float = 0.1
    blend_fraction: float = 0.4
    lam_range: Tuple[float, float] = (0.5, 0.8)
    sp_weight: Optional[float] = None
    sp_target: float = 0.1
    score_fraction: float = 0.25

    @property
    def ramp_a(self) -> float:
        """DMUE's ramp length: a fifth of the schedule (the original uses
        6-10 of 36 epochs)."""
        return max(self.epochs / 5, 1.0)


@dataclass(frozen=True)
class Setting:
    """One training condition.

    Args:
        name (str): Table label.
        noise (float): Symmetric label-noise rate.
        ambiguous (bool): Blend a fraction of the training images.
    """
    name: str
    noise: float = 0.0
    ambiguous: bool = False


NOISE_RATES = (0.0, 0.1, 0.2, 0.3)
AMBIGUOUS = Setting('ambiguous', ambiguous=True)
SETTINGS = tuple(Setting(f'noise {r:.0%}', r)
                 for r in NOISE_RATES) + (AMBIGUOUS, )


@dataclass
class TaskData:
    """The data of one (setting, seed), identical for every method.

    ``affected`` marks the flipped or blended training images and ``hidden``
    their hidden class (true class of a flip, other blend component's class;
    -1 elsewhere).
    """
    train_x: np.ndarray
    train_y: np.ndarray
    affected: np.ndarray
    hidden: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    blend_x: np.ndarray
    blend_target: np.ndarray


# ----------------------------------------------------------------------------
# data: noise, pairing, blending (numpy only)
# ----------------------------------------------------------------------------
def symmetric_noise(labels: np.ndarray, rate: float, num_classes: int,
                    rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Replace exactly ``round(rate * N)`` labels by another class.

    Args:
        labels (np.ndarray): (N, ) clean labels.
        rate (float): Noise rate in [0, 1].
        num_classes (int): K (at least 2).
        rng (np.random.Generator): Random source.

    Returns:
        tuple: The noisy labels and the (N, ) bool mask of flipped ones;
        each flipped label is drawn uniformly from the K-1 other classes.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f'noise rate must be in [0, 1], got {rate}')
    if num_classes < 2:
        raise ValueError(f'num_classes must be >= 2, got {num_classes}')
    labels = np.asarray(labels)
    flipped = np.zeros(labels.size, dtype=bool)
    flipped[rng.choice(labels.size, round(rate * labels.size),
                       replace=False)] = True
    offset = rng.integers(1, num_classes, size=labels.size)
    noisy = np.where(flipped, (labels + offset) % num_classes, labels)
    return noisy, flipped


def pair_classes(images: np.ndarray, labels: np.ndarray,
                 num_classes: int) -> np.ndarray:
    """Pair every class with a similar one by greedy matching.

    Classes are paired by the Euclidean distance of their mean images: the
    closest pair first, then the closest pair among the rest, and so on.

    Args:
        images (np.ndarray): (N, ...) images.
        labels (np.ndarray): (N, ) labels in ``0..K-1``, every class present.
        num_classes (int): K, even.

    Returns:
        np.ndarray: (K, ) ``partner`` with ``partner[partner[c]] == c``.
    """
    if num_classes % 2:
        raise ValueError(f'pairing needs an even number of classes, got '
                         f'{num_classes}')
    flat = np.asarray(images, dtype=np.float64).reshape(len(labels), -1)
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f'every class needs an image to be paired; counts '
                         f'{counts.tolist()}')
    means = np.stack([flat[labels == c].mean(0) for c in range(num_classes)])
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    dist[np.diag_indices(num_classes)] = np.inf
    partner = np.full(num_classes, -1)
    for _ in range(num_classes // 2):
        a, b = np.unravel_index(np.argmin(dist), dist.shape)
        partner[a], partner[b] = b, a
        dist[[a, b], :] = np.inf
        dist[:, [a, b]] = np.inf
    return partner


def blend(image_a: np.ndarray, image_b: np.ndarray,
          lam: np.ndarray) -> np.ndarray:
    """``lam * a + (1 - lam) * b`` per image (``lam`` of shape (N, ))."""
    lam = np.asarray(lam, dtype=np.float32).reshape((-1, ) + (1, ) *
                                                    (np.ndim(image_a) - 1))
    return lam * image_a + (1 - lam) * image_b


def _partner_images(labels: np.ndarray, pool_labels: np.ndarray,
                    partner: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """For each label ``a``, the index of a random pool image of class
    ``partner[a]``."""
    index = np.empty(len(labels), dtype=np.int64)
    for a in np.unique(labels):
        rows = np.flatnonzero(labels == a)
        pool = np.flatnonzero(pool_labels == partner[a])
        if pool.size == 0:
            raise ValueError(f'no image of class {partner[a]} to blend with '
                             f'class {a}')
        index[rows] = rng.choice(pool, rows.size)
    return index


def make_ambiguous(images: np.ndarray, labels: np.ndarray, partner: np.ndarray,
                   fraction: float, lam_range: Tuple[float, float],
                   rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Blend a fraction of the images with an image of the partner class.

    A chosen image of class ``a`` becomes ``lam x + (1 - lam) x_b`` with a
    random image ``x_b`` of class ``b = partner[a]`` (an original, never a
    blend) and ``lam ~ U(lam_range)``; its label is ``a`` with probability
    ``lam``, else ``b``.

    Args:
        images (np.ndarray): (N, ...) clean images.
        labels (np.ndarray): (N, ) clean labels.
        partner (np.ndarray): (K, ) partner class of each class.
        fraction (float): Fraction of the images to blend
            (``round(fraction * N)`` of them).
        lam_range (tuple): ``(low, high)`` of ``lam``.
        rng (np.random.Generator): Random source.

    Returns:
        dict: ``images``, ``labels`` (the given labels), ``blended`` (bool
        mask), ``lam`` (1 for unblended images) and ``other`` (class of the
        other component, -1 for unblended images).
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f'blend fraction must be in [0, 1], got {fraction}')
    n = len(labels)
    chosen = np.sort(rng.choice(n, round(fraction * n), replace=False))
    lam = np.ones(n)
    lam[chosen] = rng.uniform(*lam_range, size=chosen.size)
    other = np.full(n, -1)
    other[chosen] = partner[labels[chosen]]
    mates = _partner_images(labels[chosen], labels, partner, rng)
    out = np.array(images, dtype=np.float32, copy=True)
    out[chosen] = blend(images[chosen], images[mates], lam[chosen])
    flip = rng.uniform(size=chosen.size) >= lam[chosen]
    given = np.array(labels, copy=True)
    given[chosen] = np.where(flip, other[chosen], labels[chosen])
    blended = np.zeros(n, dtype=bool)
    blended[chosen] = True
    return dict(images=out,
                labels=given,
                blended=blended,
                lam=lam,
                other=other)


def blended_test_set(
        images: np.ndarray, labels: np.ndarray, partner: np.ndarray,
        lam_range: Tuple[float, float], num_classes: int,
        rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Blend every image with a random image of its partner class.

    Returns:
        tuple: The (N, ...) blends and their (N, K) true label distributions
        (``lam`` at the image's class, ``1 - lam`` at the partner).
    """
    lam = rng.uniform(*lam_range, size=len(labels))
    mates = _partner_images(labels, labels, partner, rng)
    target = np.zeros((len(labels), num_classes))
    rows = np.arange(len(labels))
    target[rows, labels] = lam
    target[rows, partner[labels]] = 1 - lam
    return blend(images, images[mates], lam), target


def auroc(signal: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``signal`` for detecting ``positive``.

    The probability that a random positive has a higher signal than a random
    negative, ties counting one half (Mann-Whitney U / (n_pos n_neg)).

    Args:
        signal (np.ndarray): (N, ) scores, higher = more likely positive.
        positive (np.ndarray): (N, ) bool labels.

    Returns:
        float: AUROC in [0, 1]; 0.5 is chance.
    """
    signal = np.asarray(signal, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f'AUROC needs positives and negatives, got {n_pos} '
                         f'and {n_neg}')
    order = np.argsort(signal, kind='mergesort')
    ranks = np.empty(signal.size)
    ranks[order] = np.arange(1, signal.size + 1)
    # average ranks of ties
    _, inverse = np.unique(signal, return_inverse=True)
    ranks = (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def mean_std(values: Sequence[Optional[float]]) -> Optional[List[float]]:
    """``[mean, sample std]`` of the non-None values (std 0 for one value);
    None if there is none."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return [float(np.mean(values)), std]


def round_significant(value: float, digits: int = 1) -> float:
    """Round to ``digits`` significant digits (``0.0637 -> 0.06``)."""
    if not value > 0:
        raise ValueError(f'expected a positive value, got {value}')
    return round(value, digits - 1 - math.floor(math.log10(value)))


def load_digits_task() -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (N, 8, 8) float32 in [0, 1] and labels."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target


def stratified_split(
        labels: np.ndarray, per_class: int,
        rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """``per_class`` random training indices per class; the rest is test."""
    train = np.concatenate([
        rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        for c in np.unique(labels)
    ])
    return np.sort(train), np.setdiff1d(np.arange(len(labels)), train)


def prepare_data(setting: Setting, seed: int, recipe: Recipe,
                 partner: np.ndarray) -> TaskData:
    """The data of one (setting, seed); every method gets the same."""
    images, labels = load_digits_task()
    rng = np.random.default_rng(seed)
    train, test = stratified_split(labels, recipe.per_class, rng)
    train_x, train_y = images[train], labels[train]
    hidden = np.full(len(train), -1)
    if setting.ambiguous:
        amb = make_ambiguous(train_x, train_y, partner, recipe.blend_fraction,
                             recipe.lam_range, rng)
        train_x, given, affected = amb['images'], amb['labels'], amb['blended']
        # the hidden class is the component the given label does not name
        hidden[affected] = np.where(given == train_y, amb['other'],
                                    train_y)[affected]
    else:
        given, affected = symmetric_noise(train_y, setting.noise, NUM_CLASSES,
                                          rng)
        hidden[affected] = train_y[affected]
    blend_x, blend_target = blended_test_set(images[test], labels[test],
                                             partner, recipe.lam_range,
                                             NUM_CLASSES, rng)
    return TaskData(train_x, given, affected, hidden, images[test],
                    labels[test], blend_x, blend_target)


# ----------------------------------------------------------------------------
# models and training
# ----------------------------------------------------------------------------
def random_shift(x: torch.Tensor,
                 max_shift: int,
                 generator: Optional[torch.Generator],
                 fill: float = 0.0) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels per axis.

    Args:
        x (Tensor): (B, C, H, W) images.
        max_shift (int): Largest shift per axis.
        generator (torch.Generator, optional): Random source.
        fill (float): Value of the pixels shifted in (the background).
    """
    if max_shift == 0:
        return x
    B, _, H, W = x.shape
    s = max_shift
    padded = torch.nn.functional.pad(x, (s, s, s, s), value=fill)
    dy, dx = torch.randint(0, 2 * s + 1, (2, B, 1), generator=generator)
    rows = (dy + torch.arange(H))[:, :, None]
    cols = (dx + torch.arange(W))[:, None, :]
    batch = torch.arange(B)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _normalise(images: np.ndarray) -> torch.Tensor:
    """[0, 1] images (N, H, W) -> (N, 1, H, W) in [-1, 1]."""
    return torch.from_numpy((images - 0.5) / 0.5).float()[:, None]


#: the digits' black background after :func:`_normalise`
BACKGROUND = -1.0


def model_cfg(method: str, recipe: Recipe, sp_weight: float) -> dict:
    """Model config of a method (same backbone for all)."""
    backbone = dict(type='ResNet_CIFAR',
                    depth=18,
                    in_channels=1,
                    stem_channels=8,
                    base_channels=8,
                    strides=(1, 1, 2, 1),
                    out_indices=(3, ))
    preprocessor = dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES)
    if method == 'dmue':
        return dict(type='DMUEClassifier',
                    backbone=backbone,
                    head=dict(type='DMUEHead',
                              num_classes=NUM_CLASSES,
                              loss=dict(type='DMUELoss',
                                        sp_weight=sp_weight,
                                        ramp_a=recipe.ramp_a)),
                    data_preprocessor=preprocessor)
    losses = dict(ce=dict(type='CrossEntropyLoss'),
                  ls=dict(type='LabelSmoothLoss',
                          label_smooth_val=recipe.label_smooth))
    if method not in losses:
        raise ValueError(f'unknown method {method!r}: choose from {METHODS}')
    return dict(type='ImageClassifier',
                backbone=backbone,
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead',
                          num_classes=NUM_CLASSES,
                          in_channels=64,
                          loss=losses[method]),
                data_preprocessor=preprocessor)


def _quiet() -> None:
    """Silence import-time warnings and MMEngine's init report."""
    warnings.filterwarnings('ignore', message='Fail to import')
    warnings.filterwarnings('ignore', message='.*tensor.detach')
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.WARNING)


def build_model(method: str, recipe: Recipe, sp_weight: float, seed: int):
    """Build and initialise a model; the seed fixes its init (the shared
    backbone is built first, so it starts identical for every method)."""
    _quiet()
    import dmue_mm  # noqa: F401  registers the plugin
    from mmpretrain.registry import MODELS
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg(method, recipe, sp_weight))
    model.init_weights()
    return model.train()


def _samples(labels: torch.Tensor) -> list:
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(int(y)) for y in labels]


def _batches(n: int, batch_size: int,
             generator: torch.Generator) -> List[torch.Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


def measure_sp(recipe: Recipe,
               data: TaskData,
               seed: int,
               num_batches: int = 8) -> float:
    """Mean raw ``L_sp`` of a freshly initialised DMUE model (train mode,
    dropout on) over ``num_batches`` training batches."""
    model = build_model('dmue', recipe, 1.0, seed)
    x, y = _normalise(data.train_x), torch.from_numpy(data.train_y)
    gen = torch.Generator().manual_seed(seed)
    values = []
    with torch.no_grad():
        for rows in _batches(len(y), recipe.batch_size, gen)[:num_batches]:
            values.append(float(model.loss(x[rows], _samples(y[rows]))['sp']))
    return float(np.mean(values))


class _ScoreRecorder:
    """Average DMUE's per-sample uncertainty score during training (a
    forward hook on the head's uncertainty MLP; the rows are the batch)."""

    def __init__(self, model, n: int):
        self.sums, self.counts = np.zeros(n), np.zeros(n)
        self.rows: Optional[torch.Tensor] = None
        model.head.uncertainty_mlp.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        if self.rows is not None:
            score = torch.sigmoid(output.detach()).reshape(-1).numpy()
            np.add.at(self.sums, self.rows.numpy(), score)
            np.add.at(self.counts, self.rows.numpy(), 1)

    def mean(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)


def train_model(model, method: str, data: TaskData, recipe: Recipe,
                seed: int) -> Optional[np.ndarray]:
    """Train with Adam + cosine LR; the epoch goes to MMEngine's message
    hub, where DMUE's ramps read it.

    Returns:
        np.ndarray | None: DMUE's per-sample uncertainty score averaged over
        the last ``score_fraction`` of the epochs; None for other methods.
    """
    from mmengine.logging import MessageHub
    from mmengine.optim import build_optim_wrapper
    wrapper = build_optim_wrapper(
        model,
        dict(optimizer=dict(
            type='Adam', lr=recipe.lr, weight_decay=recipe.weight_decay)))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        wrapper.optimizer, recipe.epochs)
    x, y = _normalise(data.train_x), torch.from_numpy(data.train_y)
    recorder = _ScoreRecorder(model, len(y)) if method == 'dmue' else None
    score_from = recipe.epochs - max(
        1, round(recipe.score_fraction * recipe.epochs))
    gen = torch.Generator().manual_seed(seed)
    hub = MessageHub.get_current_instance()
    model.train()
    for epoch in range(recipe.epochs):
        hub.update_info('epoch', epoch)
        for rows in _batches(len(y), recipe.batch_size, gen):
            if recorder is not None and epoch >= score_from:
                recorder.rows = rows
            inputs = random_shift(x[rows], recipe.max_shift, gen, BACKGROUND)
            model.train_step(
                dict(inputs=inputs, data_samples=_samples(y[rows])), wrapper)
        schedule.step()
    return None if recorder is None else recorder.mean()


@torch.no_grad()
def predict_proba(model, images: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Softmax scores of ``model.predict`` (eval mode)."""
    model.eval()
    x = _normalise(images)
    return torch.cat([
        torch.stack([s.pred_score for s in model.predict(part)])
        for part in x.split(chunk)
    ]).numpy()


@torch.no_grad()
def latent_argmax(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Peak class of each image's latent distribution (auxiliary branch of
    its given label, eval mode, as in training without dropout)."""
    model.eval()
    terms = model.compute_terms(_normalise(images), torch.from_numpy(labels))
    return terms.soft_targets.argmax(1).numpy()


# ----------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------
def _probability_metrics(prob: np.ndarray, blend_prob: np.ndarray,
                         data: TaskData) -> dict:
    """Top-1, NLL, ECE (raw and after 2-fold cross-fitted temperature
    scaling) on the clean test images; soft NLL on the blended ones."""
    from dmue_mm.evaluation import (crossfit_temperature,
                                    expected_calibration_error,
                                    log_probabilities, nll, soft_nll)
    log_p = log_probabilities(prob)
    fold = np.arange(len(data.test_y)) % 2
    calibrated, temps = crossfit_temperature(log_p, data.test_y, fold)
    return dict(top1=float((prob.argmax(1) == data.test_y).mean() * 100),
                nll=nll(log_p, data.test_y),
                ece=expected_calibration_error(prob, data.test_y),
                nll_ts=nll(calibrated, data.test_y),
                ece_ts=expected_calibration_error(calibrated.exp(),
                                                  data.test_y),
                temperature=float(np.mean(temps)),
                soft_nll=soft_nll(torch.from_numpy(data.blend_target),
                                  log_probabilities(blend_prob)))


def _detection_metrics(model, method: str, data: TaskData,
                       score: Optional[np.ndarray],
                       partner: np.ndarray) -> Tuple[dict, dict]:
    """AUROCs of the affected training images and DMUE's diagnostics;
    also the per-sample signals for the plots."""
    p_given = predict_proba(model, data.train_x)[np.arange(len(data.train_y)),
                                                 data.train_y]
    affected = data.affected
    has_both = 0 < affected.sum() < affected.size
    out = dict(auroc_p=auroc(-p_given, affected) if has_both else None)
    signals = dict(p_given=p_given, affected=affected)
    if method != 'dmue':
        return out, signals
    peak = latent_argmax(model, data.train_x, data.train_y)
    out.update(
        auroc_sigma=auroc(-score, affected) if has_both else None,
        sigma_mean=float(score.mean()),
        sigma_std=float(score.std()),
        sigma_affected=float(score[affected].mean())
        if affected.any() else None,
        sigma_clean=float(score[~affected].mean()),
        latent_hit=float((peak[affected] == data.hidden[affected]).mean())
        if affected.any() else None,
        latent_partner_clean=float(
            (peak[~affected] == partner[data.train_y[~affected]]).mean()))
    signals['sigma'] = score
    return out, signals


def run_one(method: str,
            setting: Setting,
            seed: int,
            recipe: Recipe,
            sp_weight: float,
            partner: np.ndarray,
            threads: int = 1) -> dict:
    """Train and evaluate one (method, setting, seed).

    Returns:
        dict: The metrics (JSON-ready) and, under ``signals``, the
        per-sample training signals for the plots.
    """
    torch.set_num_threads(threads)
    data = prepare_data(setting, seed, recipe, partner)
    model = build_model(method, recipe, sp_weight, seed)
    start = time.perf_counter()
    score = train_model(model, method, data, recipe, seed)
    seconds = time.perf_counter() - start
    metrics = _probability_metrics(predict_proba(model, data.test_x),
                                   predict_proba(model, data.blend_x), data)
    detection, signals = _detection_metrics(model, method, data, score,
                                            partner)
    metrics.update(detection)
    return dict(method=method,
                setting=setting.name,
                seed=seed,
                train_seconds=seconds,
                metrics=metrics,
                signals=signals)


# ----------------------------------------------------------------------------
# tables and plots
# ----------------------------------------------------------------------------
TABLE_METRICS = (('top1', 'top-1 %', 1), ('nll', 'NLL', 3),
                 ('ece', 'ECE %', 1), ('nll_ts', 'NLL (TS)', 3),
                 ('soft_nll', 'soft NLL (blends)',
                  3), ('auroc_p', 'AUROC p(label)', 3), ('auroc_sigma',
                                                         'AUROC sigma', 3))
DMUE_METRICS = (('sigma_mean', 'sigma mean',
                 3), ('sigma_std', 'sigma spread (std)',
                      3), ('sigma_affected', 'sigma affected',
                           3), ('sigma_clean', 'sigma clean', 3),
                ('latent_hit', 'latent peak = hidden class', 3),
                ('latent_partner_clean', 'latent peak = partner (clean)', 3))


def summarise(runs: List[dict]) -> Dict[str, Dict[str, Dict[str, list]]]:
    """``summary[setting][method][metric] = [mean, std]`` over seeds."""
    summary: Dict[str, Dict[str, Dict[str, list]]] = {}
    for run in runs:
        per = summary.setdefault(run['setting'],
                                 {}).setdefault(run['method'], {})
        for key, value in run['metrics'].items():
            per.setdefault(key, []).append(value)
    return {
        setting: {
            method: {
                k: mean_std(v)
                for k, v in metrics.items()
            }
            for method, metrics in methods.items()
        }
        for setting, methods in summary.items()
    }


#: (metric, title, digits, higher is better) of the paired table
PAIRED_METRICS = (('top1', 'Δ top-1 %', 1, True), ('nll', 'Δ NLL', 3, False),
                  ('ece', 'Δ ECE %', 1,
                   False), ('soft_nll', 'Δ soft NLL (blends)', 3, False))


def paired_differences(runs: List[dict], baseline: str = 'ce') -> dict:
    """Per-seed differences to the baseline on the same data.

    Returns:
        dict: ``diff[setting][method][metric] = [mean, std, better, n]``:
        mean and std over seeds of ``method - baseline``, and in how many of
        the ``n`` seeds the method was better (higher top-1, lower NLL, ECE
        and soft NLL).
    """
    metrics = {
        (r['method'], r['setting'], r['seed']): r['metrics']
        for r in runs
    }
    diffs: Dict[str, Dict[str, Dict[str, list]]] = {}
    for (method, setting, seed), values in metrics.items():
        base = metrics.get((baseline, setting, seed))
        if method == baseline or base is None:
            continue
        per = diffs.setdefault(setting, {}).setdefault(method, {})
        for key, *_ in PAIRED_METRICS:
            per.setdefault(key, []).append(values[key] - base[key])
    higher = {key: up for key, _, _, up in PAIRED_METRICS}
    return {
        setting: {
            method: {
                key:
                mean_std(v) +
                [sum(x > 0 if higher[key] else x < 0 for x in v),
                 len(v)]
                for key, v in per.items()
            }
            for method, per in methods.items()
        }
        for setting, methods in diffs.items()
    }


def _cell(stat: Optional[list], digits: int) -> str:
    if stat is None:
        return '–'
    return f'{stat[0]:.{digits}f} ± {stat[1]:.{digits}f}'


def _paired_cell(stat: list, digits: int) -> str:
    mean, std, better, n = stat
    return f'{mean:+.{digits}f} ± {std:.{digits}f} ({better}/{n})'


def format_tables(summary: dict, paired: dict, settings: Sequence[Setting],
                  methods: Sequence[str]) -> str:
    """The main table (every method), the paired differences to CE and
    DMUE's diagnostics, markdown."""
    from dmue_mm.evaluation.report import format_markdown_table
    rows = []
    for setting in settings:
        for method in methods:
            stats = summary.get(setting.name, {}).get(method)
            if stats is None:
                continue
            rows.append([setting.name, METHOD_NAMES[method]] + [
                _cell(stats.get(key), digits)
                for key, _, digits in TABLE_METRICS
            ])
    main = format_markdown_table(
        ['setting', 'method'] + [title for _, title, _ in TABLE_METRICS],
        rows)
    rows = [[setting.name, METHOD_NAMES[method]] + [
        _paired_cell(paired[setting.name][method][key], digits)
        for key, _, digits, _ in PAIRED_METRICS
    ] for setting in settings for method in methods
            if method in paired.get(setting.name, {})]
    if rows:
        main += ('\n\nPaired differences to CE on the same data and init, '
                 'mean ± std over seeds (seeds in which the method was '
                 'better):\n\n' +
                 format_markdown_table(['setting', 'method'] + [
                     title for _, title, _, _ in PAIRED_METRICS
                 ], rows))
    if 'dmue' not in methods:
        return main
    rows = [[setting.name] + [
        _cell(summary[setting.name]['dmue'].get(key), digits)
        for key, _, digits in DMUE_METRICS
    ] for setting in settings if 'dmue' in summary.get(setting.name, {})]
    extra = format_markdown_table(
        ['setting'] + [t for _, t, _ in DMUE_METRICS], rows)
    return main + '\n\nDMUE diagnostics (training images):\n\n' + extra


PLOT_PANELS = (('top1', 'top-1 % (clean test)'), ('nll', 'NLL (clean test)'),
               ('ece', 'ECE % (clean test)'), ('soft_nll',
                                               'soft NLL (blended test)'),
               ('auroc', 'AUROC, affected train images'))


def _series(methods: Sequence[str], key: str) -> List[Tuple[str, str, str]]:
    """``(method, metric, label)`` curves of a panel; the AUROC panel shows
    p(label) for every method and DMUE's sigma."""
    if key != 'auroc':
        return [(m, key, METHOD_NAMES[m]) for m in methods]
    curves = [(m, 'auroc_p', f'{METHOD_NAMES[m]}: p(label)') for m in methods]
    if 'dmue' in methods:
        curves.append(('dmue', 'auroc_sigma', 'DMUE: sigma'))
    return curves


def _stat(summary: dict, setting: str, method: str, key: str) -> list:
    stat = summary[setting][method].get(key)
    return [np.nan, np.nan] if stat is None else stat


def _panel_style(ax, key: str, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if key == 'auroc':
        ax.axhline(0.5, color='grey', linestyle='--', linewidth=1)


def plot_results(summary: dict, runs: List[dict], settings: Sequence[Setting],
                 methods: Sequence[str], out_dir: str) -> List[str]:
    """Write ``noise.png`` (metrics vs. noise rate), ``ambiguity.png``
    (metrics of the ambiguous setting) and ``uncertainty.png`` (DMUE's
    sigma on affected vs. clean training images); mean ± std over seeds."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    written = []
    noise = [s for s in settings if not s.ambiguous]
    if noise:
        fig, axes = plt.subplots(1, len(PLOT_PANELS), figsize=(20, 3.8))
        xs = [s.noise * 100 for s in noise]
        for ax, (key, title) in zip(axes, PLOT_PANELS):
            for method, metric, label in _series(methods, key):
                stats = np.array(
                    [_stat(summary, s.name, method, metric) for s in noise])
                ax.errorbar(xs,
                            stats[:, 0],
                            yerr=stats[:, 1],
                            marker='o',
                            capsize=3,
                            label=label)
            ax.set_xlabel('symmetric label noise %')
            _panel_style(ax, key, title)
        axes[0].legend(fontsize=8)
        axes[-1].legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, out_dir, 'noise.png'))
    ambiguous = [s for s in settings if s.ambiguous]
    if ambiguous:
        name = ambiguous[0].name
        fig, axes = plt.subplots(1, len(PLOT_PANELS), figsize=(20, 3.8))
        for ax, (key, title) in zip(axes, PLOT_PANELS):
            curves = _series(methods, key)
            for i, (method, metric, label) in enumerate(curves):
                mean, std = _stat(summary, name, method, metric)
                ax.errorbar([i], [mean],
                            yerr=[std],
                            marker='o',
                            capsize=4,
                            color=f'C{METHODS.index(method)}')
            ax.set_xticks(range(len(curves)))
            ax.set_xticklabels([c[2] for c in curves], fontsize=7, rotation=20)
            ax.set_xlim(-0.5, len(curves) - 0.5)
            _panel_style(ax, key, title)
        fig.suptitle(f'{name}: {_runs_note(runs, name)}', fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, out_dir, 'ambiguity.png'))
    dmue = [
        r for r in runs
        if r['method'] == 'dmue' and r['signals']['affected'].any()
    ]
    if dmue:
        names = list(dict.fromkeys(r['setting'] for r in dmue))
        fig, axes = plt.subplots(1,
                                 len(names),
                                 figsize=(4 * len(names), 3.2),
                                 squeeze=False)
        for ax, name in zip(axes[0], names):
            signals = [r['signals'] for r in dmue if r['setting'] == name]
            sigma = np.concatenate([s['sigma'] for s in signals])
            hit = np.concatenate([s['affected'] for s in signals])
            bins = np.linspace(sigma.min(), sigma.max(), 30)
            ax.hist(sigma[~hit], bins, alpha=0.6, density=True, label='clean')
            ax.hist(sigma[hit],
                    bins,
                    alpha=0.6,
                    density=True,
                    label='flipped / blended')
            ax.set_title(f'DMUE sigma, {name}', fontsize=10)
        axes[0, 0].legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out_dir, 'uncertainty.png'))
    return written


def _runs_note(runs: List[dict], setting: str) -> str:
    """``'N seed(s)'`` of a setting, for plot titles."""
    seeds = {r['seed'] for r in runs if r['setting'] == setting}
    return f'mean ± std over {len(seeds)} seed(s)'


def _save(fig, out_dir: str, name: str) -> str:
    import matplotlib.pyplot as plt
    path = osp.join(out_dir, name)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='CE vs. label smoothing vs. DMUE under label noise and '
        'annotation ambiguity (scikit-learn digits)')
    parser.add_argument('--quick',
                        action='store_true',
                        help='1 seed, 10 epochs (about 2 minutes)')
    parser.add_argument('--seeds',
                        type=int,
                        default=None,
                        help='number of seeds (default 5, quick 1)')
    parser.add_argument('--epochs',
                        type=int,
                        default=None,
                        help='epochs (default 40, quick 10)')
    parser.add_argument('--methods',
                        nargs='+',
                        default=list(METHODS),
                        choices=METHODS)
    parser.add_argument('--settings',
                        nargs='+',
                        default=None,
                        help='subset of: ' +  # argparse formats with %
                        ', '.join(repr(s.name)
                                  for s in SETTINGS).replace('%', '%%'))
    parser.add_argument('--sp-weight',
                        type=float,
                        default=None,
                        help='DMUE gamma (default: calibrated so that '
                        'gamma * L_sp at init is --sp-target)')
    parser.add_argument('--sp-target', type=float, default=0.1)
    parser.add_argument('--jobs',
                        type=int,
                        default=2,
                        help='parallel training processes')
    parser.add_argument('--threads',
                        type=int,
                        default=1,
                        help='torch threads per process')
    parser.add_argument('--out-dir', default=DEFAULT_OUT)
    return parser.parse_args(argv)


def _select_settings(names: Optional[Sequence[str]]) -> List[Setting]:
    if names is None:
        return list(SETTINGS)
    known = {s.name: s for s in SETTINGS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f'--settings: unknown {unknown}; choose from '
                         f'{list(known)}')
    return [known[n] for n in names]


def _run_all(tasks: List[tuple], jobs: int) -> List[dict]:
    from mmengine.utils import ProgressBar
    bar = ProgressBar(len(tasks))
    runs = []
    with ProcessPoolExecutor(jobs, mp_context=get_context('spawn')) as pool:
        for future in as_completed([pool.submit(run_one, *t) for t in tasks]):
            runs.append(future.result())
            bar.update()
    print()
    return runs


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    seeds = args.seeds or (1 if args.quick else 5)
    recipe = Recipe(epochs=args.epochs or (10 if args.quick else 40),
                    sp_weight=args.sp_weight,
                    sp_target=args.sp_target)
    settings = _select_settings(args.settings)
    torch.set_num_threads(args.threads)
    images, labels = load_digits_task()
    partner = pair_classes(images, labels, NUM_CLASSES)
    pairs = sorted({tuple(sorted((c, int(p)))) for c, p in enumerate(partner)})
    print(f'similar-class pairs (closest class-mean images): {pairs}')

    calibration = dict(sp_target=recipe.sp_target)
    sp_weight = recipe.sp_weight
    if sp_weight is None and 'dmue' in args.methods:
        sp_init = measure_sp(recipe,
                             prepare_data(SETTINGS[0], 0, recipe, partner),
                             seed=0)
        sp_weight = round_significant(recipe.sp_target / sp_init)
        calibration.update(sp_init=sp_init)
        print(f'DMUE: L_sp at init = {sp_init:.4g} -> gamma = {sp_weight:g} '
              f'(gamma * L_sp = {sp_weight * sp_init:.3g}, target '
              f'{recipe.sp_target})')
    calibration.update(sp_weight=sp_weight)
    recipe = replace(recipe, sp_weight=sp_weight)

    # longest runs first
    order = sorted(args.methods, key=lambda m: m != 'dmue')
    tasks = [(m, s, seed, recipe, sp_weight or 0.0, partner, args.threads)
             for m in order for s in settings for seed in range(seeds)]
    start = time.perf_counter()
    runs = _run_all(tasks, args.jobs)
    wall = time.perf_counter() - start
    key = {(m, s.name, seed): i for i, (m, s, seed, *_) in enumerate(tasks)}
    runs.sort(key=lambda r: key[(r['method'], r['setting'], r['seed'])])

    methods = [m for m in METHODS if m in args.methods]
    summary = summarise(runs)
    floor = _soft_nll_floor(recipe)
    paired = paired_differences(runs)
    tables = format_tables(summary, paired, settings, methods)
    header = _header(recipe, seeds, floor, calibration)
    print(header + '\n\n' + tables)
    from dmue_mm.utils.fileio import write_json, write_text
    write_text(osp.join(args.out_dir, 'results.md'),
               header + '\n\n' + tables + '\n')
    plots = plot_results(summary, runs, settings, methods, args.out_dir)
    result = dict(
        recipe=asdict(recipe),
        ramp_a=recipe.ramp_a,
        settings=[asdict(s) for s in settings],
        pairs=pairs,
        sp_calibration=calibration,
        soft_nll_floor=floor,
        seeds=seeds,
        jobs=args.jobs,
        threads=args.threads,
        wall_seconds=wall,
        train_seconds={
            m: mean_std([r['train_seconds'] for r in runs if r['method'] == m])
            for m in methods
        },
        environment=dict(torch=torch.__version__,
                         python=platform.python_version(),
                         cpus=os.cpu_count()),
        summary=summary,
        paired_vs_ce=paired,
        runs=[{
            k: v
            for k, v in r.items() if k != 'signals'
        } for r in runs])
    path = osp.join(args.out_dir, 'noisy_labels.json')
    write_json(path, result, indent=1)
    print(f'wall time {wall:.0f} s; wrote {path}, results.md, ' +
          ', '.join(osp.basename(p) for p in plots))
    return result


def _header(recipe: Recipe, seeds: int, floor: float,
            calibration: dict) -> str:
    """What the tables measured, in a few lines."""
    lines = [
        f'scikit-learn digits, {recipe.per_class} training images per class, '
        f'the other images for testing; ResNet_CIFAR-18 at width 8; Adam lr '
        f'{recipe.lr:g} (cosine), {recipe.epochs} epochs, batch '
        f'{recipe.batch_size}, shifts of up to {recipe.max_shift} px; '
        f'{seeds} seed(s), mean ± std over seeds.',
        f'Blends: {recipe.blend_fraction:.0%} of the training images in '
        f'"ambiguous"; lam ~ U{tuple(recipe.lam_range)}; soft NLL floor '
        f'(mean entropy of the targets) {floor:.3f}.',
        'AUROC: detecting the flipped/blended training images with '
        '-p(given label) of the final model, and with -sigma (DMUE score '
        f'averaged over the last {recipe.score_fraction:.0%} of the epochs).',
    ]
    if calibration.get('sp_weight') is not None:
        measured = ''
        if 'sp_init' in calibration:
            measured = (
                f', L_sp at init {calibration["sp_init"]:.3g} -> '
                f'gamma * L_sp = '
                f'{calibration["sp_init"] * calibration["sp_weight"]:.3g}'
                f', target {calibration["sp_target"]:g}')
        lines.append(f'DMUE: gamma = {calibration["sp_weight"]:g}{measured}; '
                     f'ramp_a = {recipe.ramp_a:g}.')
    return '\n\n'.join(lines)


def _soft_nll_floor(recipe: Recipe, num: int = 100001) -> float:
    """Mean entropy of ``(lam, 1 - lam)``, ``lam ~ U(lam_range)``: the
    lowest soft NLL any model can reach on the blended test images."""
    lam = np.linspace(*recipe.lam_range, num)
    return float(np.mean(-lam * np.log(lam) - (1 - lam) * np.log(1 - lam)))


if __name__ == '__main__':
    main()
