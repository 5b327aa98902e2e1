"""Helpers of ``benchmarks/noisy_labels.py``: label noise, class pairing,
blending, AUROC and the table statistics, against hand-computed values."""
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import ROOT, load_script
from dmue_testing import EPS32

nl = load_script(osp.join(ROOT, 'benchmarks', 'noisy_labels.py'),
                 'noisy_labels')

pytestmark = pytest.mark.numeric


class TestSymmetricNoise:

    def test_exact_count_and_other_class(self):
        labels = np.arange(20) % 5
        noisy, flipped = nl.symmetric_noise(labels, 0.3, 5,
                                            np.random.default_rng(0))
        assert flipped.sum() == 6
        assert (noisy[flipped] != labels[flipped]).all()
        assert (noisy[~flipped] == labels[~flipped]).all()
        assert noisy.min() >= 0 and noisy.max() < 5

    def test_two_classes_full_noise_swaps(self):
        labels = np.array([0, 1, 1, 0])
        noisy, flipped = nl.symmetric_noise(labels, 1.0, 2,
                                            np.random.default_rng(0))
        assert flipped.all()
        np.testing.assert_array_equal(noisy, [1, 0, 0, 1])

    def test_zero_rate_is_identity(self):
        labels = np.array([2, 0, 1])
        noisy, flipped = nl.symmetric_noise(labels, 0.0, 3,
                                            np.random.default_rng(0))
        np.testing.assert_array_equal(noisy, labels)
        assert not flipped.any()

    def test_rejects_bad_rate(self):
        with pytest.raises(ValueError, match='noise rate'):
            nl.symmetric_noise(np.zeros(3, int), 1.5, 3,
                               np.random.default_rng(0))


class TestPairClasses:

    def test_greedy_closest_pair_first(self):
        # class means 0, 2, 3, 6: (1, 2) is closest (1); then (0, 3) (6),
        # although 0's nearest class is 1
        images = np.array([0.0, 2.0, 3.0, 6.0])[:, None]
        partner = nl.pair_classes(images, np.arange(4), 4)
        np.testing.assert_array_equal(partner, [3, 2, 1, 0])

    def test_uses_class_means(self):
        images = np.array([-1.0, 1.0, 10.0, 11.0, 0.5, 9.0])[:, None]
        labels = np.array([0, 0, 1, 1, 2, 3])  # means 0, 10.5, 0.5, 9
        np.testing.assert_array_equal(nl.pair_classes(images, labels, 4),
                                      [2, 3, 0, 1])

    def test_rejects_odd_or_missing_classes(self):
        with pytest.raises(ValueError, match='even'):
            nl.pair_classes(np.zeros((3, 1)), np.arange(3), 3)
        with pytest.raises(ValueError, match='every class'):
            nl.pair_classes(np.zeros((3, 1)), np.array([0, 1, 1]), 4)


# images of class c are constant with value c (c = 0..3); pairs (0,1), (2,3)
PARTNER = np.array([1, 0, 3, 2])


def constant_images(labels):
    return np.broadcast_to(
        np.asarray(labels, np.float32)[:, None, None],
        (len(labels), 2, 2)).copy()


class TestBlending:

    def test_blend_hand_values(self):
        a = np.array([[1.0, 1.0], [4.0, 0.0]], np.float32)
        b = np.array([[0.0, 2.0], [0.0, 4.0]], np.float32)
        # exact in float32: 0.75, 0.5 and the products are dyadic
        np.testing.assert_array_equal(
            nl.blend(a, b, np.array([0.75, 0.5])), [[0.75, 1.25], [2.0, 2.0]])

    def test_make_ambiguous(self):
        labels = np.arange(400) % 4
        out = nl.make_ambiguous(constant_images(labels), labels, PARTNER, 0.25,
                                (0.6, 0.9), np.random.default_rng(1))
        blended = out['blended']
        assert blended.sum() == 100
        lam, other = out['lam'], out['other']
        np.testing.assert_array_equal(other[blended], PARTNER[labels[blended]])
        assert (other[~blended] == -1).all() and (lam[~blended] == 1).all()
        assert ((lam[blended] >= 0.6) & (lam[blended] <= 0.9)).all()
        # pixel = lam * a + (1 - lam) * partner(a)
        expected = lam * labels + (1 - lam) * np.maximum(other, 0)
        # float32 blend vs float64: lam rounded once, two products and a sum,
        # each rounding <= eps/2 of a value <= 3 (the labels): <= 2 eps * 3
        np.testing.assert_allclose(
            out['images'][:, 0, 0], expected, rtol=0, atol=4 * EPS32 * 3)
        given = out['labels']
        assert (given[~blended] == labels[~blended]).all()
        assert ((given == labels) | (given == other)).all()

    def test_coin_flip_follows_lambda(self):
        # lam fixed at 0.7: the given label is the image's own class with
        # probability 0.7 (binomial std 0.007 for n = 4000: 5 sigma)
        labels = np.arange(4000) % 4
        out = nl.make_ambiguous(constant_images(labels), labels, PARTNER, 1.0,
                                (0.7, 0.7), np.random.default_rng(2))
        assert abs((out['labels'] == labels).mean() - 0.7) < 0.036

    def test_blended_test_set(self):
        labels = np.array([0, 1, 2, 3, 2])
        images, target = nl.blended_test_set(constant_images(labels), labels,
                                             PARTNER, (0.5, 0.8), 4,
                                             np.random.default_rng(3))
        # float64 lam + (1 - lam): one or two roundings, far below rtol 1e-7
        np.testing.assert_allclose(target.sum(1), 1)
        lam = target[np.arange(5), labels]
        assert ((lam >= 0.5) & (lam <= 0.8)).all()
        np.testing.assert_allclose(target[np.arange(5), PARTNER[labels]],
                                   1 - lam)
        # as in test_make_ambiguous: <= 2 eps of values <= 3
        np.testing.assert_allclose(images[:, 1, 1],
                                   lam * labels + (1 - lam) * PARTNER[labels],
                                   rtol=0,
                                   atol=4 * EPS32 * 3)


class TestAuroc:

    def test_hand_case(self):
        # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered
        assert nl.auroc([0.1, 0.4, 0.35, 0.8],
                        [False, False, True, True]) == pytest.approx(0.75)

    def test_ties_count_half(self):
        # pairs: (1 vs 1) tie 0.5, (1 vs 0) 1, (2 vs 1) 1, (2 vs 0) 1
        assert nl.auroc([1, 2, 1, 0],
                        [True, True, False, False]) == pytest.approx(3.5 / 4)
        assert nl.auroc([5, 5, 5], [True, False, False]) == 0.5

    def test_extremes_and_sign(self):
        signal, positive = np.array([0.9, 0.8, 0.2, 0.1
                                     ]), np.array([True, True, False, False])
        assert nl.auroc(signal, positive) == 1.0
        assert nl.auroc(-signal, positive) == 0.0

    def test_needs_both_groups(self):
        with pytest.raises(ValueError, match='positives and negatives'):
            nl.auroc([0.1, 0.2], [True, True])


class TestSmallHelpers:

    def test_mean_std(self):
        assert nl.mean_std([1.0, 2.0, 3.0]) == [2.0, 1.0]
        assert nl.mean_std([5.0, None]) == [5.0, 0.0]
        assert nl.mean_std([None, None]) is None

    @pytest.mark.parametrize('value,expected', [(0.0637, 0.06), (1.64, 2.0),
                                                (23.7, 20.0)])
    def test_round_significant(self, value, expected):
        assert nl.round_significant(value) == pytest.approx(expected)

    def test_random_shift_moves_a_pixel_by_at_most_one(self):
        x = torch.zeros(64, 1, 5, 5)
        x[:, 0, 2, 2] = 1.0
        out = nl.random_shift(x, 1, torch.Generator().manual_seed(0))
        assert out.shape == x.shape
        assert (out.sum(dim=(1, 2, 3)) == 1).all()
        where = out[:, 0].flatten(1).argmax(1)
        rows, cols = where // 5, where % 5
        assert ((rows - 2).abs() <= 1).all() and ((cols - 2).abs() <= 1).all()
        # all 9 shifts occur among 64 images
        assert len(set(zip(rows.tolist(), cols.tolist()))) == 9
        assert torch.equal(nl.random_shift(x, 0, None), x)

    def test_random_shift_fills_the_background(self):
        x = torch.ones(32, 1, 3, 3)
        out = nl.random_shift(x, 1, torch.Generator().manual_seed(0), -1.0)
        assert set(out.unique().tolist()) == {-1.0, 1.0}
        # an image shifted by (dy, dx) keeps (3 - |dy|)(3 - |dx|) pixels
        kept = (out == 1).sum(dim=(1, 2, 3))
        assert set(kept.tolist()) <= {9, 6, 4}

    def test_soft_nll_floor(self):
        # entropy of (0.5, 0.5) is log 2
        recipe = nl.Recipe(lam_range=(0.5, 0.5))
        assert nl._soft_nll_floor(recipe, 3) == pytest.approx(np.log(2))


def test_help_lists_the_settings(capsys):
    """``--help`` prints the setting names (they contain '%', which argparse
    would read as a format directive)."""
    with pytest.raises(SystemExit) as exit_info:
        nl.parse_args(['--help'])
    assert exit_info.value.code == 0
    assert "'noise 30%'" in capsys.readouterr().out
