"""MVSoftmaxClsHead against the AM MV-Softmax formula (margin 0.35, mask
t 1.12, scale 32, as the DMUE pretraining)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import dmue_mm  # noqa: F401  registers the head

M, T, S = 0.35, 1.12, 32.0
NUM_CLASSES, DIM, BATCH = 5, 6, 12


def build_head(**kwargs):
    cfg = dict(type='MVSoftmaxClsHead', num_classes=NUM_CLASSES,
               in_channels=DIM)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def make_batch(head, seed=0):
    """Features near their class weight for half the rows (target cosine
    above the margin), random for the rest; norms far from 1."""
    gen = torch.Generator().manual_seed(seed)
    weight = head.norm_product.weight.detach()
    labels = torch.randint(0, NUM_CLASSES, (BATCH, ), generator=gen)
    feats = torch.randn(BATCH, DIM, generator=gen)
    near = F.normalize(weight[labels[:BATCH // 2]], dim=1)
    feats[:BATCH // 2] = near + 0.3 * feats[:BATCH // 2]
    norms = torch.rand(BATCH, 1, generator=gen) * 2.5 + 0.5
    return F.normalize(feats, dim=1) * norms, labels


def reference_logits(weight, feats, labels, normalize_features, easy_margin):
    """Element by element in float64, straight from the formula."""
    w = weight.detach().double().numpy()
    x = feats.detach().double().numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    if normalize_features:
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = np.zeros((len(x), len(w)))
    kinds = {'hard': 0, 'easy': 0, 'gt_margin': 0, 'gt_plain': 0}
    for i, y in enumerate(labels.tolist()):
        cos = [float(np.dot(x[i], w[k])) for k in range(len(w))]
        for k, c in enumerate(cos):
            if k == y:
                use_margin = c > M or not easy_margin
                kinds['gt_margin' if use_margin else 'gt_plain'] += 1
                out[i, k] = c - M if use_margin else c
            elif c > cos[y] - M:
                kinds['hard'] += 1
                out[i, k] = T * c + T - 1
            else:
                kinds['easy'] += 1
                out[i, k] = c
    return torch.from_numpy(S * out).float(), kinds


def samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


class TestMVSoftmaxLogits:

    @pytest.mark.parametrize('normalize_features', [True, False])
    @pytest.mark.parametrize('easy_margin', [True, False])
    def test_logits_equal_reference(self, normalize_features, easy_margin):
        torch.manual_seed(0)
        head = build_head(
            normalize_features=normalize_features, easy_margin=easy_margin)
        feats, labels = make_batch(head)
        ref, kinds = reference_logits(head.norm_product.weight, feats,
                                      labels, normalize_features,
                                      easy_margin)
        # the batch exercises every branch of the rule
        assert kinds['hard'] > 0 and kinds['easy'] > 0
        assert kinds['gt_margin'] > 0
        if easy_margin:
            assert kinds['gt_plain'] > 0
        logits = head((feats, ), labels)
        # within 1e-5; |logits| reach ~80 without feature normalisation,
        # where one float32 step is 7.6e-6, hence the relative 1e-6 as well
        torch.testing.assert_close(logits, ref, rtol=1e-6, atol=1e-5)
        # the modified cosines (before the scale) within 1e-6
        torch.testing.assert_close(logits / S, ref / S, rtol=0, atol=1e-6)

    def test_loss_is_ce_and_gradients_finite(self):
        torch.manual_seed(1)
        head = build_head(cal_acc=True)
        feats, labels = make_batch(head, seed=1)
        feats.requires_grad_(True)
        losses = head.loss((feats, ), samples(labels))
        ref, _ = reference_logits(head.norm_product.weight, feats, labels,
                                  True, True)
        assert math.isclose(
            losses['loss'].item(),
            F.cross_entropy(ref, labels).item(),
            rel_tol=1e-5)
        assert 'accuracy_top-1' in losses
        losses['loss'].backward()
        for grad in (feats.grad, head.norm_product.weight.grad):
            assert torch.isfinite(grad).all() and grad.abs().sum() > 0

    def test_predict_needs_no_labels(self):
        head = build_head()
        feats, _ = make_batch(head)
        preds = head.predict((feats, ))
        scores = torch.stack([p.pred_score for p in preds])
        cosine = F.normalize(feats) @ F.normalize(
            head.norm_product.weight.detach()).t()
        torch.testing.assert_close(scores, F.softmax(S * cosine, dim=1))
        assert [int(p.pred_label) for p in preds] == \
            cosine.argmax(1).tolist()

    def test_bf16_autocast_computes_in_float32(self):
        head = build_head()
        feats, labels = make_batch(head)
        expected = head((feats.bfloat16().float(), ), labels)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            logits = head((feats.bfloat16(), ), labels)
        assert logits.dtype == torch.float32
        torch.testing.assert_close(logits, expected)


class TestMVSoftmaxConfig:

    def test_defaults_and_weight_layout(self):
        head = build_head()
        assert (head.margin, head.mask_weight, head.scale) == (M, T, S)
        assert head.normalize_features is True
        assert head.state_dict()['norm_product.weight'].shape == \
            (NUM_CLASSES, DIM)

    def test_rejects_mixup_targets(self):
        head = build_head()
        feats, _ = make_batch(head)
        only_scores = [
            DataSample().set_gt_score(torch.full((NUM_CLASSES, ), 0.2))
            for _ in range(BATCH)
        ]
        with pytest.raises(ValueError, match='gt_label'):
            head.loss((feats, ), only_scores)

    @pytest.mark.parametrize('kwargs,match', [
        (dict(num_classes=0), 'num_classes'),
        (dict(margin=-0.1), 'margin'),
        (dict(mask_weight=0.9), 'mask_weight'),
        (dict(scale=0), 'scale'),
    ])
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            build_head(**kwargs)
