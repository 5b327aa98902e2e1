"""``ExpressionMetric``: accuracy, per-class scores, confusion matrix,
calibration and vote-distribution metrics in one pass."""
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmpretrain.registry import METRICS
from .calibration import (crossfit_temperature, expected_calibration_error,
                          fit_temperature, kl_divergence, log_probabilities,
                          nll, normalise_distribution, scale_temperature,
                          soft_nll)
from .classification import classification_report, confusion_matrix
from .report import format_report
from .visualization import save_confusion_matrix_png

__all__ = ['ExpressionMetric']

PER_CLASS_KEYS = ('precision', 'recall', 'f1-score', 'support')


@METRICS.register_module()
class ExpressionMetric(BaseMetric):
    """Metrics of single-label facial expression recognition.

    Collects ``pred_score`` (softmax probabilities), ``gt_label``, the
    optional ``gt_score`` (annotator vote counts or a soft label, e.g. from
    FERPlus) and ``sample_idx`` of every data sample, then reports (keys under
    the prefix ``expression/``):

    - ``top1``, ``mean_class_acc`` (macro recall), ``macro_precision``,
      ``macro_f1`` in percent; macro averages run over the classes with
      samples in the evaluated set (see
      :mod:`dmue_mm.evaluation.classification` for undefined ratios);
    - ``precision_classwise``, ``recall_classwise``, ``f1-score_classwise``
      (percent) and ``support_classwise``, in class order, ``classes`` (the
      class names of the dataset meta), and ``confusion_matrix`` (C, C)
      counts, rows = true class;
    - ``nll`` (nats) and ``ece`` (percent, ``num_bins`` equal-width bins);
    - with ``calibrate``: ``temperature``, ``nll_ts`` and ``ece_ts`` after
      temperature scaling. With ``temperature=None`` the scaled scores are
      cross-fitted on the evaluated set: the samples are split by the parity
      of their dataset index, each half is scaled by the T fitted (min NLL)
      on the other half, so ``nll_ts``/``ece_ts`` are out-of-sample; the
      reported ``temperature`` is fitted on the whole set, for use as the
      fixed ``temperature`` of another split (fit on val, pass to test). With
      a given ``temperature`` every sample is scaled by it;
    - where every sample has a ``gt_score`` that is not just the one-hot
      label: ``soft_nll`` (cross-entropy against the normalised votes) and
      ``kl`` (KL(votes || prediction)), in nats, and with ``calibrate`` also
      ``soft_nll_ts`` and ``kl_ts``.

    Args:
        num_bins (int): Equal-width confidence bins of the ECE. Defaults to
            15.
        calibrate (bool): Report temperature-scaled scores. Defaults to True.
        temperature (float, optional): A fixed temperature (e.g. the
            ``temperature`` of a validation run). Defaults to None
            (cross-fitting on the evaluated set).
        confusion_png (str, optional): Write the confusion matrix (counts and
            row-normalised, with class names) to this PNG file. Defaults to
            None (``tools/test.py`` sets one in the work dir).
        print_report (bool): Log the summary, the per-class table and the
            confusion matrix with class names. Defaults to True.
        collect_device (str): ``'cpu'`` or ``'gpu'``, to collect results
            across ranks. Defaults to ``'cpu'``.
        prefix (str, optional): Metric name prefix. Defaults to
            ``'expression'``.

    Examples:
        >>> test_evaluator = dict(type='ExpressionMetric')
        >>> # fixed temperature fitted on the validation set
        >>> test_evaluator = dict(type='ExpressionMetric', temperature=1.7)
    """
    default_prefix: Optional[str] = 'expression'

    def __init__(self,
                 num_bins: int = 15,
                 calibrate: bool = True,
                 temperature: Optional[float] = None,
                 confusion_png: Optional[str] = None,
                 print_report: bool = True,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f'ExpressionMetric num_bins must be a positive '
                             f'int, got {num_bins!r}')
        if temperature is not None and not temperature > 0:
            raise ValueError('ExpressionMetric temperature must be > 0 (or '
                             f'None to cross-fit), got {temperature!r}')
        self.num_bins = num_bins
        self.calibrate = calibrate
        self.temperature = temperature
        self.confusion_png = confusion_png
        self.print_report = print_report

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Collect the scores and labels of one batch.

        Args:
            data_batch: A batch of data from the dataloader (unused).
            data_samples (Sequence[dict]): The model outputs.
        """
        for sample in data_samples:
            if 'pred_score' not in sample:
                raise ValueError(
                    'ExpressionMetric needs pred_score (class probabilities) '
                    'in the model outputs; use a classification head that '
                    'predicts scores, or MMPretrain\'s Accuracy for labels')
            result = dict(
                pred_score=sample['pred_score'].detach().cpu().float(),
                gt_label=sample['gt_label'].detach().cpu().reshape(-1),
                # the dataset index decides the cross-fitting half
                sample_idx=sample.get('sample_idx', len(self.results)))
            if 'gt_score' in sample:
                result['gt_score'] = sample['gt_score'].detach().cpu()
            self.results.append(result)

    def class_names(self, num_classes: int) -> List[str]:
        """Class names of the dataset meta, or ``'0'..'C-1'``."""
        classes = (self.dataset_meta or {}).get('classes')
        if classes is not None and len(classes) == num_classes:
            return [str(name) for name in classes]
        if classes is not None:
            print_log(
                f'ExpressionMetric: the dataset meta has {len(classes)} '
                f'classes but the scores have {num_classes}; using indices',
                logger='current',
                level=logging.WARNING)
        return [str(i) for i in range(num_classes)]

    def _probability_scores(self,
                            log_p: torch.Tensor,
                            gt_label: torch.Tensor,
                            votes: Optional[torch.Tensor],
                            suffix: str = '') -> Dict[str, float]:
        """NLL, ECE and (with votes) soft NLL and KL of ``log_p``."""
        ece = expected_calibration_error(log_p.exp(), gt_label, self.num_bins)
        scores = {'nll': nll(log_p, gt_label), 'ece': ece}
        if votes is not None:
            scores['soft_nll'] = soft_nll(votes, log_p)
            scores['kl'] = kl_divergence(votes, log_p)
        return {name + suffix: value for name, value in scores.items()}

    def _calibrated(self, log_p: torch.Tensor, gt_label: torch.Tensor,
                    fold: np.ndarray) -> Optional[tuple]:
        """The temperature to report and the scaled log-probabilities."""
        if self.temperature is not None:
            return self.temperature, scale_temperature(log_p, self.temperature)
        if len(set(fold.tolist())) < 2:
            print_log(
                'ExpressionMetric: temperature scaling needs at least 2 '
                'samples (one per cross-fitting half); skipped',
                logger='current',
                level=logging.WARNING)
            return None
        scaled, _ = crossfit_temperature(log_p, gt_label, fold)
        return fit_temperature(log_p, gt_label), scaled

    @staticmethod
    def _vote_distributions(results: List[dict], gt_label: torch.Tensor,
                            num_classes: int) -> Optional[torch.Tensor]:
        """Normalised ``gt_score`` rows, or None when absent or one-hot."""
        if not all('gt_score' in res for res in results):
            return None
        votes = normalise_distribution(
            torch.stack([res['gt_score'] for res in results]), num_classes)
        one_hot = torch.nn.functional.one_hot(gt_label, num_classes)
        return None if torch.equal(votes, one_hot.to(votes)) else votes

    def compute_metrics(self, results: List[dict]) -> Dict[str, object]:
        """Compute the metrics from the collected results.

        Args:
            results (list[dict]): The collected results of all ranks.

        Returns:
            dict: Metric name -> value (see the class docstring).
        """
        pred_score = torch.stack([res['pred_score'] for res in results])
        gt_label = torch.cat([res['gt_label'] for res in results]).long()
        num_classes = pred_score.size(1)
        classes = self.class_names(num_classes)

        cm = confusion_matrix(pred_score.argmax(dim=1), gt_label, num_classes)
        report = classification_report(cm)
        metrics: Dict[str, object] = {
            key: report[key]
            for key in ('top1', 'mean_class_acc', 'macro_precision',
                        'macro_f1')
        }

        log_p = log_probabilities(pred_score)
        votes = self._vote_distributions(results, gt_label, num_classes)
        metrics.update(self._probability_scores(log_p, gt_label, votes))
        if self.calibrate:
            fold = np.asarray([res['sample_idx'] for res in results]) % 2
            calibrated = self._calibrated(log_p, gt_label, fold)
            if calibrated is not None:
                metrics['temperature'] = calibrated[0]
                metrics.update(
                    self._probability_scores(calibrated[1], gt_label, votes,
                                             '_ts'))

        for key in PER_CLASS_KEYS:
            metrics[f'{key}_classwise'] = report[key].tolist()
        metrics['classes'] = classes
        metrics['confusion_matrix'] = cm

        if self.print_report:
            print_log('\n' + format_report(metrics, classes), logger='current')
        if self.confusion_png:
            save_confusion_matrix_png(cm, classes, self.confusion_png)
            print_log(
                f'confusion matrix saved to {self.confusion_png}',
                logger='current')
        return metrics
