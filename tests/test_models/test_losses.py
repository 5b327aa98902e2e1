"""DMUE loss formulas and the DMUELoss module vs. the released formulas.

Tolerances come from the float32 arithmetic: ``EPS`` (2^-23) times the
number of rounded operations an entry goes through, and divided by the
range where a min-max scaling divides by it.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from dmue_testing import EPS

from dmue_mm.models.heads import BatchGather, class_similarity_features
from dmue_mm.models.heads.dmue_head import BranchOutputs
from dmue_mm.models.losses import (DMUELoss, latent_distribution, ramp_down,
                                   ramp_up, soft_loss_sum, sp_loss_sum)

pytestmark = pytest.mark.numeric


class TestRamps:
    # the released ramp values, tabulated to 4 decimals (3 for r_down)
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
            # softmax, power and renormalisation over K entries: each value
            # in [0, 1] carries at most ~K rounding errors of EPS per path
            tol = 8 * 7 * EPS
            torch.testing.assert_close(out, ref, atol=tol, rtol=0)
            torch.testing.assert_close(out.sum(1), torch.ones(5), atol=tol,
                                       rtol=0)

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
        # 12 squared terms in [0, 1], summed: n * EPS relative
        assert soft_loss_sum(z, labels, dist).item() == pytest.approx(
            float(ref), rel=4 * 12 * EPS)


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
        # normalised Gram entries (|.| <= 1) carry (D + n) EPS each; the
        # mean of their squared differences then 8 (D + n) EPS at most
        assert out.item() == pytest.approx(ref.item(),
                                           abs=8 * (16 + 6) * EPS)

    def test_rows_of_a_larger_batch(self):
        torch.manual_seed(3)
        a, h = torch.randn(6, 3), torch.randn(6, 8)
        full = sp_loss_sum(a, a, h @ h.t())
        parts = (sp_loss_sum(a[:2], a, h[:2] @ h.t()) +
                 sp_loss_sum(a[2:], a, h[2:] @ h.t()))
        # the same 36 rounded terms, summed in another order
        assert parts.item() == pytest.approx(full.item(),
                                             abs=36 * 8 * (8 + 6) * EPS)


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
        # a cosine (dot product of D = 5, two norms) is off by (D + 2) EPS;
        # min-max scaling divides the differences of means by the row's
        # range, so the scaled error is 4 (D + 2) EPS / range per row
        tol = 4 * (5 + 2) * EPS / (high - low)
        err = (out - (means - low) / (high - low)).abs()
        assert (err <= tol).all(), (err / tol).max()

    def test_absent_and_single_class_are_finite(self):
        f = torch.rand(4, 5)
        out = class_similarity_features(f, f, torch.tensor([0, 0, 2, 2]), 4)
        assert torch.isfinite(out).all()
        assert (out[:, 1] == 0).all() and (out[:, 3] == 0).all()
        one_class = class_similarity_features(f, f, torch.zeros(4).long(), 3)
        assert (one_class == 0).all()


def loss_inputs(labels, K=3, D=6, seed=5):
    """Random branch outputs for ``labels`` and their batch."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor(labels)
    out = BranchOutputs(
        target_logits=torch.randn(len(labels), K, generator=gen),
        uncertainty=torch.rand(len(labels), generator=gen),
        soft_targets=torch.stack([
            latent_distribution(torch.randn(1, K - 1, generator=gen), int(y),
                                1.2)[0] for y in labels
        ]),
        aux_logits=[
            torch.randn(int((labels != c).sum()), K - 1, generator=gen)
            for c in range(K)
        ],
        neck_feats=torch.randn(len(labels), D, generator=gen))
    return out, BatchGather(labels, K)


class TestDMUELoss:
    LABELS = [0, 1, 2, 2, 0, 1, 1]

    def test_each_term_is_its_formula(self):
        out, batch = loss_inputs(self.LABELS)
        y, K = batch.labels, 3
        loss = DMUELoss()
        # n rounded terms of O(1) averaged: n * EPS relative
        tol = dict(rel=16 * len(y) * K * EPS)
        wce = F.cross_entropy(out.uncertainty[:, None] * out.target_logits, y)
        assert loss.wce(out, batch).item() == pytest.approx(wce.item(), **tol)
        masked = F.softmax(out.target_logits, 1) * (1 - F.one_hot(y, K))
        soft = ((masked - out.soft_targets)**2).mean()
        assert loss.soft(out, batch).item() == pytest.approx(
            soft.item(), **tol)
        aux = sum(
            F.cross_entropy(a, torch.where(y[y != c] > c, y[y != c] - 1,
                                           y[y != c])) / K
            for c, a in enumerate(out.aux_logits))
        assert loss.aux(out, batch).item() == pytest.approx(aux.item(), **tol)
        h = out.neck_feats
        sp = sum(
            F.mse_loss(F.normalize(a @ a.t(), dim=1),
                       F.normalize((h @ h.t())[y != c][:, y != c], dim=1)) / K
            for c, a in enumerate(out.aux_logits))
        assert loss.sp(out, batch).item() == pytest.approx(sp.item(), **tol)

    @pytest.mark.parametrize('epoch', [0, 3, 8])
    def test_forward_weights_the_terms(self, epoch):
        out, batch = loss_inputs(self.LABELS)
        loss = DMUELoss(soft_weight=0.25, sp_weight=7.0, ramp_a=6)
        losses = loss(out, batch, epoch=epoch)
        terms = loss.terms(out, batch)
        up, down = ramp_up(epoch, 6), ramp_down(epoch, 6)
        expected = dict(loss_wce=up * terms['wce'],
                        loss_soft=up * 0.25 * terms['soft'],
                        loss_sp=up * 7.0 * terms['sp'],
                        loss_aux=down * terms['aux'])
        for name, value in expected.items():  # one product more: exact-ish
            assert losses[name].item() == pytest.approx(value.item(),
                                                        rel=4 * EPS), name
        assert losses['ramp_up'].item() == pytest.approx(up)
        assert losses['uncertainty_mean'].item() == pytest.approx(
            out.uncertainty.mean().item())

    def test_branch_without_rows_adds_zero(self):
        out, batch = loss_inputs([1, 1, 1, 1])  # branch 1 has no row
        assert out.aux_logits[1].shape == (0, 2)
        loss = DMUELoss()
        for name, value in loss.terms(out, batch).items():
            assert torch.isfinite(value), name
        a0 = out.aux_logits[0]
        ce0 = F.cross_entropy(a0, torch.zeros(4, dtype=torch.long))
        ce2 = F.cross_entropy(out.aux_logits[2], torch.ones(4).long())
        assert loss.aux(out, batch).item() == pytest.approx(
            ((ce0 + ce2) / 3).item(), rel=16 * 12 * EPS)

    @pytest.mark.parametrize('key,value', [('temperature', 0), ('ramp_a', 0),
                                           ('sp_weight', -1),
                                           ('soft_weight', -0.5)])
    def test_bad_values(self, key, value):
        with pytest.raises(ValueError, match=f'model.head.loss.{key}'):
            DMUELoss(**{key: value})
