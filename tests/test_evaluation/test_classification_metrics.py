"""Hard-label metrics against hand-computed confusion matrices."""
import warnings

import numpy as np
import pytest
import torch

from dmue_mm.evaluation import (classification_report, confusion_matrix,
                                per_class_scores)

pytestmark = pytest.mark.numeric

# Tolerances: every metric is a ratio of small integer counts, computed in
# float64 with at most three roundings (<= 3 * 2**-53 ~ 3e-16 relative). The
# defaults (pytest.approx rel 1e-6, assert_allclose rtol 1e-7) are far above
# that and far below the 1/24 steps between the values counts can give.

# 4 classes; class 3 has no sample but one (wrong) prediction.
GT = [0, 0, 0, 1, 1, 1, 2, 2]
PRED = [0, 0, 1, 1, 1, 3, 2, 0]
CM = np.array([[2, 1, 0, 0], [0, 2, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]])


class TestConfusionMatrix:

    def test_hand_computed(self):
        cm = confusion_matrix(PRED, GT, 4)
        np.testing.assert_array_equal(cm, CM)
        assert cm.dtype == np.int64

    def test_accepts_tensors(self):
        cm = confusion_matrix(torch.tensor(PRED), torch.tensor(GT), 4)
        np.testing.assert_array_equal(cm, CM)

    def test_label_out_of_range(self):
        with pytest.raises(ValueError, match=r'gt_label.*\[0, 3\).*num_clas'):
            confusion_matrix([0, 1], [0, 3], 3)

    def test_length_mismatch(self):
        with pytest.raises(ValueError, match='3 items but gt_label has 2'):
            confusion_matrix([0, 1, 1], [0, 1], 2)


class TestClassificationReport:

    def test_hand_computed(self):
        report = classification_report(CM)
        assert report['top1'] == pytest.approx(5 / 8 * 100)
        np.testing.assert_allclose(report['precision'],
                                   [200 / 3, 200 / 3, 100, 0])
        np.testing.assert_allclose(report['recall'], [200 / 3, 200 / 3, 50, 0])
        np.testing.assert_allclose(report['f1-score'],
                                   [200 / 3, 200 / 3, 200 / 3, 0])
        np.testing.assert_array_equal(report['support'], [3, 3, 2, 0])
        # macro averages over the classes with samples (0, 1, 2)
        assert report['mean_class_acc'] == pytest.approx(
            (200 / 3 + 200 / 3 + 50) / 3)
        assert report['macro_precision'] == pytest.approx(
            (200 / 3 + 200 / 3 + 100) / 3)
        assert report['macro_f1'] == pytest.approx(200 / 3)

    def test_undefined_ratios_are_zero_without_warnings(self):
        # class 1 has a sample but is never predicted, class 2 neither
        cm = confusion_matrix([0, 0], [0, 1], 3)
        with warnings.catch_warnings(), np.errstate(all='raise'):
            warnings.simplefilter('error')
            scores = per_class_scores(cm)
            report = classification_report(cm)
        np.testing.assert_allclose(scores['precision'], [50, 0, 0])
        np.testing.assert_allclose(scores['recall'], [100, 0, 0])
        np.testing.assert_allclose(scores['f1-score'], [200 / 3, 0, 0])
        assert not np.isnan(scores['f1-score']).any()
        assert report['mean_class_acc'] == pytest.approx(50)

    def test_empty_matrix(self):
        report = classification_report(np.zeros((2, 2), np.int64))
        assert report['top1'] == 0 and report['mean_class_acc'] == 0


def random_predictions(seed):
    """Labels of a few classes, some classes absent or never predicted."""
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 9))
    gt = rng.integers(0, num_classes, size=int(rng.integers(1, 200)))
    pred = np.where(
        rng.random(gt.size) < 0.6, gt, rng.integers(0, num_classes, gt.size))
    if seed % 3 == 0:  # a class with no sample and no prediction
        gt, pred = gt % (num_classes - 1), pred % (num_classes - 1)
    return pred, gt, num_classes


class TestAgainstLibraries:
    """The matrix and the per-class ratios equal scikit-learn's and
    MMPretrain's definitions."""

    @pytest.mark.parametrize('seed', range(12))
    def test_confusion_matrix_is_sklearns(self, seed):
        from sklearn.metrics import confusion_matrix as sk_confusion
        pred, gt, num_classes = random_predictions(seed)
        np.testing.assert_array_equal(
            confusion_matrix(pred, gt, num_classes),
            sk_confusion(gt, pred, labels=np.arange(num_classes)))

    @pytest.mark.parametrize('seed', range(12))
    def test_per_class_scores(self, seed):
        from mmpretrain.evaluation import SingleLabelMetric
        from sklearn.metrics import precision_recall_fscore_support
        pred, gt, num_classes = random_predictions(seed)
        scores = per_class_scores(confusion_matrix(pred, gt, num_classes))
        sk = precision_recall_fscore_support(
            gt, pred, labels=np.arange(num_classes), zero_division=0)
        # the same divisions: bit-identical
        np.testing.assert_array_equal(scores['precision'], sk[0] * 100)
        np.testing.assert_array_equal(scores['recall'], sk[1] * 100)
        np.testing.assert_array_equal(scores['support'], sk[3])
        # 2PR/(P+R) here, 2tp/(2tp+fp+fn) there: a few roundings apart
        eps = np.finfo(np.float64).eps
        np.testing.assert_allclose(
            scores['f1-score'], sk[2] * 100, rtol=8 * eps, atol=0)
        mm = SingleLabelMetric.calculate(
            torch.from_numpy(pred), torch.from_numpy(gt),
            average=None, num_classes=num_classes)
        # MMPretrain divides in float32 (a few float32 roundings)
        for ours, theirs in zip(
                (scores['precision'], scores['recall'], scores['f1-score']),
                mm[:3]):
            np.testing.assert_allclose(
                ours, theirs.double().numpy(),
                rtol=8 * np.finfo(np.float32).eps, atol=0)
