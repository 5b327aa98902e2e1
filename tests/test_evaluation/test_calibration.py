"""NLL, ECE, temperature scaling and vote-distribution metrics against hand
values."""
import math

import numpy as np
import pytest
import torch

from dmue_mm.evaluation import (calibration_bins, crossfit_temperature,
                                expected_calibration_error, fit_temperature,
                                kl_divergence, log_probabilities, nll,
                                normalise_distribution, scale_temperature,
                                soft_nll)

pytestmark = pytest.mark.numeric

# Tolerances: the functions run in float64. Inputs given as decimals are
# float32 (PROB), rounded by <= 2**-24 (6e-8) relative each:
# * exp(log_probabilities(PROB)) vs PROB: the float32 values of a row sum
#   to 1 within sum(p_i * 2**-24) = 6e-8, so the renormalisation moves each
#   p by <= 6e-8 * p < 5e-8 (p <= 0.83), plus float64 roundings: atol 1e-7.
# * NLL/ECE hand values (means of |log p| and |1 - p|, >= 0.3 here): <= 2e-7
#   relative, under rel=1e-6.
# * float64 identities (temperature scaling, KL + entropy = soft NLL):
#   a few float64 roundings of O(1) values, far below pytest.approx's
#   default rel 1e-6 and abs 1e-12.
# * fitted temperatures against the generating one: a statistical bound
#   (the labels are a random sample of 20000, or 4000), not rounding; fixed
#   seeds make them deterministic.
# confidences 0.72, 0.64, 0.55, 0.83 (away from bin edges); sample 1 wrong
PROB = torch.tensor([[0.72, 0.18, 0.10], [0.64, 0.26, 0.10],
                     [0.25, 0.55, 0.20], [0.07, 0.10, 0.83]])
LABEL = torch.tensor([0, 1, 1, 2])


class TestLogProbabilities:

    def test_round_trip(self):
        log_p = log_probabilities(PROB)
        assert log_p.dtype == torch.float64
        torch.testing.assert_close(
            log_p.exp(), PROB.double(), atol=1e-7, rtol=0)

    def test_zero_probability_is_finite(self):
        log_p = log_probabilities([[1.0, 0.0]])
        assert torch.isfinite(log_p).all() and log_p[0, 1] < -700

    @pytest.mark.parametrize('scores', [[[2.0, -1.0]], [[0.3, 0.3]], [0.5]])
    def test_rejects_non_probabilities(self, scores):
        with pytest.raises(ValueError, match='pred_score'):
            log_probabilities(scores)


class TestNllEce:

    def test_nll_hand_value(self):
        expected = -(math.log(.72) + math.log(.26) + math.log(.55) +
                     math.log(.83)) / 4
        assert nll(log_probabilities(PROB), LABEL) == pytest.approx(
            expected, rel=1e-6)

    def test_ece_one_sample_per_bin(self):
        # |1-.72| + |0-.64| + |1-.55| + |1-.83| over 4, in percent
        assert expected_calibration_error(PROB, LABEL, 10) == pytest.approx(
            (0.28 + 0.64 + 0.45 + 0.17) / 4 * 100, rel=1e-6)

    def test_ece_shared_bin(self):
        # all four in (0.5, 1]: accuracy 3/4, mean confidence 2.74/4
        assert expected_calibration_error(PROB, LABEL, 2) == pytest.approx(
            abs(0.75 - 2.74 / 4) * 100, rel=1e-6)

    def test_default_is_15_bins_with_edges_right_closed(self):
        bins = calibration_bins([[1.0, 0.0], [0.5, 0.5]], [0, 1])
        assert len(bins['count']) == 15
        # 1.0 in the last bin, 0.5 = 7.5/15 in bin 7 = (7/15, 8/15]
        assert bins['count'][14] == 1 and bins['count'][7] == 1
        assert bins['accuracy'][14] == 1 and bins['accuracy'][7] == 0

    def test_invalid_bins(self):
        with pytest.raises(ValueError, match='num_bins'):
            calibration_bins(PROB, LABEL, 0)


def calibrated_then_sharpened(true_temperature, num=20000, classes=5, seed=0):
    """Labels drawn from softmax(z): a calibrated model. Its scores are then
    sharpened to softmax(z * T*), so the temperature that undoes it is T*."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num, classes, generator=gen, dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(1), 1, generator=gen)[:, 0]
    return (logits * true_temperature).softmax(1), labels


class TestTemperatureScaling:

    def test_scale_temperature(self):
        log_p = log_probabilities(PROB)
        expected = torch.log_softmax(PROB.double().log() / 2, dim=1)
        torch.testing.assert_close(scale_temperature(log_p, 2.0), expected)
        with pytest.raises(ValueError, match='temperature'):
            scale_temperature(log_p, 0.0)

    @pytest.mark.parametrize('true_temperature', [2.5, 0.6])
    def test_recovers_known_temperature(self, true_temperature):
        prob, labels = calibrated_then_sharpened(true_temperature)
        log_p = log_probabilities(prob)
        fitted = fit_temperature(log_p, labels)
        assert fitted == pytest.approx(true_temperature, rel=0.02)
        # calibrated scores are better on both scores
        scaled = scale_temperature(log_p, fitted)
        assert nll(scaled, labels) < nll(log_p, labels)
        assert expected_calibration_error(scaled.exp(), labels) < 1.5
        assert expected_calibration_error(prob, labels) > 5

    def test_fit_is_the_nll_minimum(self):
        prob, labels = calibrated_then_sharpened(1.7, num=500, seed=1)
        log_p = log_probabilities(prob)
        fitted = fit_temperature(log_p, labels)
        best = nll(scale_temperature(log_p, fitted), labels)
        for factor in (0.99, 1.01):
            assert best <= nll(
                scale_temperature(log_p, fitted * factor), labels)

    @pytest.mark.parametrize('true_temperature, seed', [(2.5, 0), (0.6, 3),
                                                        (1.7, 1)])
    def test_fit_is_the_stationary_point(self, true_temperature, seed):
        """The fit equals the root of dNLL/d(1/T), found independently."""
        from scipy.optimize import brentq
        prob, labels = calibrated_then_sharpened(
            true_temperature, num=500, seed=seed)
        log_p = log_probabilities(prob)
        true_class = log_p.gather(1, labels[:, None])[:, 0]

        def slope(beta):  # d/d(beta) of mean(-beta l_y + lse(beta l))
            scaled = torch.softmax(beta * log_p, dim=1)
            return float(((scaled * log_p).sum(1) - true_class).mean())

        log_t = -math.log(brentq(slope, 1e-2, 1e2, xtol=1e-15))
        fitted = math.log(fit_temperature(log_p, labels, tol=1e-6))
        # the bounded Brent search stops within 2 (sqrt(eps) |x| + tol / 3)
        # of the minimum x = log T (the golden-section search it replaced:
        # within tol / 2)
        bound = 2 * (math.sqrt(np.finfo(float).eps) * abs(fitted) + 1e-6 / 3)
        assert abs(fitted - log_t) <= bound

    def test_perfect_predictions_hit_lower_bound(self):
        fitted = fit_temperature(
            log_probabilities([[0.9, 0.1], [0.2, 0.8]]), [0, 1])
        assert fitted == pytest.approx(1e-2, rel=1e-4)

    def test_crossfit_uses_the_other_half(self):
        prob, labels = calibrated_then_sharpened(2.0, num=4000, seed=2)
        log_p = log_probabilities(prob)
        fold = np.arange(len(labels)) % 2
        scaled, temps = crossfit_temperature(log_p, labels, fold)
        t0 = fit_temperature(log_p[0::2], labels[0::2])
        t1 = fit_temperature(log_p[1::2], labels[1::2])
        assert temps == pytest.approx([t0, t1])
        torch.testing.assert_close(scaled[1::2],
                                   scale_temperature(log_p[1::2], t0))
        torch.testing.assert_close(scaled[0::2],
                                   scale_temperature(log_p[0::2], t1))
        assert temps[0] == pytest.approx(2.0, rel=0.1)

    def test_crossfit_needs_both_halves(self):
        with pytest.raises(ValueError, match='both folds'):
            crossfit_temperature(log_probabilities(PROB), LABEL, [0] * 4)


class TestVoteDistributions:
    VOTES = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    PRED = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])

    def test_normalise(self):
        dist = normalise_distribution(self.VOTES, 3)
        torch.testing.assert_close(
            dist,
            torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.0, 1.0]],
                         dtype=torch.float64))

    @pytest.mark.parametrize(
        'votes', [[[1.0, -1.0, 1.0]], [[0.0, 0.0, 0.0]], [[1.0, 1.0]]])
    def test_normalise_rejects(self, votes):
        with pytest.raises(ValueError, match='gt_score'):
            normalise_distribution(votes, 3)

    def test_soft_nll_and_kl_hand_values(self):
        dist = normalise_distribution(self.VOTES)
        log_p = log_probabilities(self.PRED)
        expected_soft = -(
            (0.75 * math.log(0.5) + 0.25 * math.log(0.25)) + math.log(0.5)) / 2
        expected_kl = ((0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(1.0)) +
                       math.log(1 / 0.5)) / 2
        assert soft_nll(dist, log_p) == pytest.approx(expected_soft)
        assert kl_divergence(dist, log_p) == pytest.approx(expected_kl)
        # soft NLL = KL + entropy of the votes
        entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / 2
        assert soft_nll(
            dist,
            log_p) == pytest.approx(kl_divergence(dist, log_p) + entropy)

    def test_kl_zero_for_matching_prediction(self):
        dist = normalise_distribution(self.VOTES)
        log_p = log_probabilities(dist)
        assert kl_divergence(dist, log_p) == pytest.approx(0.0, abs=1e-12)
