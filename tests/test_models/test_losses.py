"""DMUE loss functions vs. the spec's formulas (spec §2.3, §3)."""
import math

import pytest
import torch
import torch.nn.functional as F

from dmue_mm.models.heads import class_similarity_features
from dmue_mm.models.losses import (latent_distribution, ramp_down, ramp_up,
                                   soft_loss_sum, sp_loss_sum)


class TestRamps:
    # spec §3.3, tabulated to 4 decimals (3 for r_down)
    UP_A6 = [.0067, .0310, .1084, .2865, .5738, .8703, 1.0]
    UP_A10 = [.0067, .0174, .0408, .0863, .1653, .2865, .4493, .6376, .8187,
              .9512, 1.0]
    DOWN_A6 = {7: .980, 12: .779, 20: .613, 35: .503}
    DOWN_A10 = {12: .973, 20: .779, 35: .600}

    def test_ramp_up_table(self):
        for alpha, table in ((6, self.UP_A6), (10, self.UP_A10)):
            for epoch, value in enumerate(table):
                assert ramp_up(epoch, alpha) == pytest.approx(value, abs=5e-5)
            assert ramp_up(alpha + 1, alpha) == 1.0
            assert ramp_up(35, alpha) == 1.0

    def test_ramp_down_table(self):
        for alpha, table in ((6, self.DOWN_A6), (10, self.DOWN_A10)):
            for epoch in range(alpha + 1):
                assert ramp_down(epoch, alpha) == 1.0
            for epoch, value in table.items():
                assert ramp_down(epoch, alpha) == pytest.approx(value,
                                                                abs=5e-4)

    def test_formulas(self):
        assert ramp_up(2, 6) == math.exp(-5 * (1 - 2 / 6)**2)
        assert ramp_down(9, 6) == math.exp(-(1 - 6 / 9)**2)

    def test_bad_alpha(self):
        with pytest.raises(ValueError, match='ramp_a'):
            ramp_up(0, 0)


class TestLatentDistribution:

    def test_power_renormalised_softmax_with_zero_inserted(self):
        torch.manual_seed(0)
        logits, T = torch.randn(5, 6), 1.2
        for c in (0, 3, 6):
            out = latent_distribution(logits, c, T)
            p = F.softmax(logits, dim=1)
            q = p**(1 / T)
            q = q / q.sum(dim=1, keepdim=True)
            ref = torch.zeros(5, 7)
            others = [k for k in range(7) if k != c]
            ref[:, others] = q
            torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
            torch.testing.assert_close(out.sum(1), torch.ones(5))

    def test_temperature_flattens(self):
        logits = torch.tensor([[2.0, 0.0, -1.0]])
        sharp = latent_distribution(logits, 0, 1.0)
        flat = latent_distribution(logits, 0, 1.2)
        assert flat[0, 1] < sharp[0, 1] and flat[0, 3] > sharp[0, 3]

    def test_soft_loss_masks_ground_truth(self):
        torch.manual_seed(1)
        z, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
        dist = torch.rand(4, 3)
        probs = F.softmax(z, 1)
        ref = sum((probs[i, k] * (k != labels[i]) - dist[i, k])**2
                  for i in range(4) for k in range(3))
        assert soft_loss_sum(z, labels, dist).item() == pytest.approx(
            float(ref), abs=1e-6)


class TestSimilarityPreserving:

    def test_row_normalised_gram_mse(self):
        torch.manual_seed(2)
        a, h = torch.randn(6, 3), torch.randn(6, 16)
        out = sp_loss_sum(a, a, h @ h.t()) / 36
        g_aux = a @ a.t()
        g_aux = g_aux / g_aux.norm(dim=1, keepdim=True)
        g_tar = h @ h.t()
        g_tar = g_tar / g_tar.norm(dim=1, keepdim=True)
        ref = ((g_aux - g_tar)**2).mean()
        assert out.item() == pytest.approx(ref.item(), rel=1e-5)

    def test_rows_of_a_larger_batch(self):
        torch.manual_seed(3)
        a, h = torch.randn(6, 3), torch.randn(6, 8)
        full = sp_loss_sum(a, a, h @ h.t())
        parts = (sp_loss_sum(a[:2], a, h[:2] @ h.t()) +
                 sp_loss_sum(a[2:], a, h[2:] @ h.t()))
        assert parts.item() == pytest.approx(full.item(), rel=1e-5)


class TestClassSimilarity:

    def test_matches_formula_when_all_classes_present(self):
        torch.manual_seed(4)
        f = torch.rand(8, 5)
        labels = torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])
        out = class_similarity_features(f, f, labels, 3)
        cos = (f @ f.t()) / (f.norm(dim=1)[:, None] * f.norm(dim=1)[None])
        means = torch.stack(
            [cos[:, labels == c].mean(dim=1) for c in range(3)], dim=1)
        low = means.min(1, keepdim=True).values
        high = means.max(1, keepdim=True).values
        torch.testing.assert_close(out, (means - low) / (high - low),
                                   atol=1e-6, rtol=0)

    def test_absent_and_single_class_are_finite(self):
        f = torch.rand(4, 5)
        out = class_similarity_features(f, f, torch.tensor([0, 0, 2, 2]), 4)
        assert torch.isfinite(out).all()
        assert (out[:, 1] == 0).all() and (out[:, 3] == 0).all()
        one_class = class_similarity_features(f, f, torch.zeros(4).long(), 3)
        assert (one_class == 0).all()
