"""ExpressionMetric built from config dicts, fed with MMPretrain data
samples, against hand-computed values."""
import logging
import math

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

from dmue_mm.evaluation import (ExpressionMetric, crossfit_temperature,
                                fit_temperature, kl_divergence,
                                log_probabilities, nll, normalise_distribution,
                                scale_temperature, soft_nll)
from mmpretrain.registry import METRICS
from mmpretrain.structures import DataSample

pytestmark = pytest.mark.numeric

# Tolerances: the metric runs in float64 on float32 scores. A hand value
# from the decimal probabilities differs by their float32 rounding, <= 2**-24
# (6e-8) relative per score: NLL and ECE (means of |log p| or of |1 - p|)
# move by <= 1.5e-7 relative, below rel=1e-6. The metric against the same
# float64 functions on the same scores: identical arithmetic, batching only
# concatenates; pytest.approx's default rel 1e-6 covers a reordered sum of
# <= 40 float64 terms (40 * 2**-53 ~ 4e-15) with room to spare.
CLASSES = ('angry', 'happy', 'neutral')
PROB = torch.tensor([[0.72, 0.18, 0.10], [0.64, 0.26, 0.10],
                     [0.25, 0.55, 0.20], [0.07, 0.10, 0.83]])
LABEL = [0, 1, 1, 2]


def samples(prob=PROB, labels=LABEL, votes=None, with_idx=True):
    """Model outputs as the Evaluator hands them over (dicts)."""
    out = []
    for i, (score, label) in enumerate(zip(prob, labels)):
        sample = DataSample(
            metainfo=dict(sample_idx=i) if with_idx else {}).set_gt_label(
                int(label)).set_pred_score(score)
        if votes is not None:
            sample.set_gt_score(torch.as_tensor(votes[i]))
        out.append(sample.to_dict())
    return out


def evaluate(data_samples, classes=CLASSES, batch=3, **cfg):
    metric = METRICS.build(dict(type='ExpressionMetric', **cfg))
    metric.dataset_meta = None if classes is None else dict(classes=classes)
    for start in range(0, len(data_samples), batch):
        metric.process(None, data_samples[start:start + batch])
    return metric.evaluate(len(data_samples))


class TestExpressionMetric:

    def test_registered_and_defaults(self):
        metric = METRICS.build(dict(type='ExpressionMetric'))
        assert isinstance(metric, ExpressionMetric)
        assert metric.num_bins == 15 and metric.temperature is None

    def test_hand_computed(self):
        m = evaluate(samples(), num_bins=10)
        # predictions 0, 0, 1, 2 for labels 0, 1, 1, 2
        np.testing.assert_array_equal(m['expression/confusion_matrix'],
                                      [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
        assert m['expression/top1'] == pytest.approx(75)
        assert m['expression/mean_class_acc'] == pytest.approx(
            (100 + 50 + 100) / 3)
        assert m['expression/precision_classwise'] == pytest.approx(
            [50, 100, 100])
        assert m['expression/recall_classwise'] == pytest.approx(
            [100, 50, 100])
        assert m['expression/f1-score_classwise'] == pytest.approx(
            [200 / 3, 200 / 3, 100])
        assert m['expression/support_classwise'] == [1, 2, 1]
        assert m['expression/macro_f1'] == pytest.approx(
            (200 / 3 * 2 + 100) / 3)
        assert m['expression/classes'] == list(CLASSES)
        assert m['expression/nll'] == pytest.approx(
            -(math.log(.72) + math.log(.26) + math.log(.55) + math.log(.83)) /
            4,
            rel=1e-6)
        assert m['expression/ece'] == pytest.approx(38.5, rel=1e-6)
        assert 'expression/kl' not in m and 'expression/soft_nll' not in m

    def test_crossfit_by_sample_index_parity(self):
        gen = torch.Generator().manual_seed(0)
        prob = (torch.randn(40, 3, generator=gen) * 3).softmax(1)
        labels = torch.randint(3, (40, ), generator=gen)
        m = evaluate(samples(prob, labels), batch=7)
        log_p = log_probabilities(prob)
        scaled, _ = crossfit_temperature(log_p, labels, np.arange(40) % 2)
        assert m['expression/nll_ts'] == pytest.approx(nll(scaled, labels))
        assert m['expression/temperature'] == pytest.approx(
            fit_temperature(log_p, labels))

    def test_fixed_temperature(self):
        m = evaluate(samples(), temperature=2.0)
        log_p = scale_temperature(log_probabilities(PROB), 2.0)
        assert m['expression/temperature'] == 2.0
        assert m['expression/nll_ts'] == pytest.approx(nll(log_p, LABEL))

    def test_calibrate_off(self):
        m = evaluate(samples(), calibrate=False)
        assert not any(key.endswith('_ts') for key in m)
        assert 'expression/temperature' not in m

    def test_vote_distributions(self):
        votes = [[3, 1, 0], [1, 2, 1], [0, 4, 0], [0, 1, 3]]
        m = evaluate(samples(votes=votes), temperature=1.5)
        dist = normalise_distribution(torch.tensor(votes))
        log_p = log_probabilities(PROB)
        assert m['expression/soft_nll'] == pytest.approx(soft_nll(dist, log_p))
        assert m['expression/kl'] == pytest.approx(kl_divergence(dist, log_p))
        scaled = scale_temperature(log_p, 1.5)
        assert m['expression/kl_ts'] == pytest.approx(
            kl_divergence(dist, scaled))

    def test_one_hot_scores_are_not_votes(self):
        one_hot = torch.eye(3)[LABEL]
        m = evaluate(samples(votes=one_hot))
        assert 'expression/kl' not in m

    def test_class_names_fallback(self):
        assert evaluate(
            samples(), classes=None)['expression/classes'] == ['0', '1', '2']
        assert evaluate(samples(), classes=('a', 'b'))['expression/classes'] \
            == ['0', '1', '2']

    def test_single_sample_skips_crossfit(self):
        m = evaluate(samples(PROB[:1], LABEL[:1]))
        assert 'expression/nll_ts' not in m and m['expression/top1'] == 100

    def test_report_is_logged(self):
        logger = MMLogger.get_instance('test_expression_report')
        records = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())
        logger.addHandler(handler)
        try:
            evaluate(samples())
        finally:
            logger.removeHandler(handler)
        text = '\n'.join(records)
        assert 'mean class accuracy (%)' in text
        for name in CLASSES:
            assert name in text
        assert 'true \\ predicted' in text

    def test_writes_png(self, tmp_path):
        path = tmp_path / 'sub' / 'cm.png'
        evaluate(samples(), confusion_png=str(path))
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    @pytest.mark.parametrize('cfg, match', [
        (dict(num_bins=0), 'num_bins'),
        (dict(temperature=-1.0), 'temperature'),
    ])
    def test_bad_arguments(self, cfg, match):
        with pytest.raises(ValueError, match=match):
            METRICS.build(dict(type='ExpressionMetric', **cfg))

    def test_needs_scores(self):
        metric = METRICS.build(dict(type='ExpressionMetric'))
        sample = DataSample().set_gt_label(0).set_pred_label(0).to_dict()
        with pytest.raises(ValueError, match='pred_score'):
            metric.process(None, [sample])
