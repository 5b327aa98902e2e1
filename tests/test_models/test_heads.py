"""DMUEHead vs. an independent computation of the released formulas.

Tolerances are multiples of float32's ``EPS`` sized by the computation (see
each assertion); the similarity-preserving term is compared relatively, as
it is ~1e-4 at ResNet-18 scale.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from dmue_testing import (EPS, loss_total, one_thread, samples,  # noqa
                          tiny_dmue)
from mmengine.logging import MessageHub

from dmue_mm.models.losses import ramp_down, ramp_up

pytestmark = pytest.mark.numeric

K = 4
LABELS = [0, 1, 2, 3, 2, 0, 1, 3, 3, 0, 2, 1]  # every class 3 times


def reference(model, x, y, T=1.2):
    """DMUE terms written from the released formulas, BN in eval, no
    dropout."""
    bb, head = model.backbone, model.head
    feat = bb.maxpool(bb.relu(bb.norm1(bb.conv1(x))))
    for name in bb.res_layers[:-1]:
        feat = getattr(bb, name)(feat)
    gap = lambda t: t.mean(dim=(2, 3))  # noqa: E731
    neck = head.bnneck
    f = gap(bb.layer4(feat))
    h = neck(f)
    z = head.fc(h)
    onehot = F.one_hot(y, K).float()
    # uncertainty score
    norms = f.norm(dim=1)
    cos = (f @ f.t()) / (norms[:, None] * norms[None, :])
    m = torch.stack([cos[:, y == c].mean(1) for c in range(K)], 1)
    lo, hi = m.min(1, keepdim=True).values, m.max(1, keepdim=True).values
    m = (m - lo) / (hi - lo)
    sigma = torch.sigmoid(head.uncertainty_mlp(torch.cat([m, onehot], 1)))
    wce = F.cross_entropy(sigma * z, y)
    # latent distributions
    L = torch.zeros(len(y), K)
    for c in range(K):
        jdx = (y == c).nonzero()[:, 0]
        s = head.aux_fcs[c](neck(gap(head.branches[c]['layer4'](feat[jdx]))))
        q = F.softmax(s, 1)**(1 / T)
        q = q / q.sum(1, keepdim=True)
        L[jdx] = torch.cat([q[:, :c], torch.zeros(len(jdx), 1), q[:, c:]], 1)
    soft = ((F.softmax(z, 1) * (1 - onehot) - L)**2).mean()
    # auxiliary CE and similarity preserving
    g_tar = h @ h.t()
    aux, sp = 0.0, 0.0
    for c in range(K):
        idx = (y != c).nonzero()[:, 0]
        a = head.aux_fcs[c](neck(gap(head.branches[c]['layer4'](feat[idx]))))
        target = torch.where(y[idx] > c, y[idx] - 1, y[idx])
        aux = aux + F.cross_entropy(a, target) / K
        g_a = F.normalize(a @ a.t(), p=2, dim=1)
        g_t = F.normalize(g_tar[idx][:, idx], p=2, dim=1)
        sp = sp + ((g_a - g_t)**2).mean() / K
    return dict(wce=wce, soft=soft, sp=sp, aux=aux), sigma


def randomise(model, seed=0):
    """Non-trivial classifier, neck and branch weights (the init's
    std 0.001 makes every term nearly constant)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.head.named_parameters():
            if not name.startswith('branches'):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for c, branch in enumerate(model.head.branches):
            for p in branch.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        neck = model.head.bnneck
        neck.running_mean.copy_(torch.randn(neck.num_features) * 0.1)
        neck.running_var.copy_(torch.rand(neck.num_features) + 0.5)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    model = tiny_dmue(K)
    randomise(model)
    return model.eval()


@pytest.fixture(scope='module')
def batch():
    torch.manual_seed(1)
    return torch.randn(len(LABELS), 3, 32, 32), torch.tensor(LABELS)


class TestExactTerms:

    def test_terms_and_score_match_reference(self, model, batch):
        x, y = batch
        with torch.no_grad():
            ref, sigma_ref = reference(model, x, y)
            terms = model.compute_terms(x, y)
        # sigma: min-max scaled means of D = 64 cosines (range ~0.1 here)
        # through a 2-layer MLP: ~(D + 2) EPS / range per input
        torch.testing.assert_close(terms.uncertainty, sigma_ref[:, 0],
                                   atol=64 * 66 * EPS, rtol=0)
        assert terms.uncertainty.std() > 1e-3  # the MLP sees varied inputs
        for name in ('wce', 'soft', 'aux'):
            # means of B x K = 48 entries through exp/log and the branches
            assert getattr(terms, name).item() == pytest.approx(
                ref[name].item(), rel=2 * 48 * 64 * EPS), name
        # the SP term is a small difference of normalised Gram entries:
        # relative to its size (the released guide's 1e-4)
        assert terms.sp.item() == pytest.approx(ref['sp'].item(), rel=1e-4)
        assert ref['sp'].item() > 1e-4  # not a vacuous comparison

    @pytest.mark.parametrize('epoch', [0, 3, 8])
    def test_loss_dict_weights_and_logs(self, model, batch, epoch):
        x, y = batch
        hub = MessageHub.get_current_instance()
        hub.update_info('epoch', epoch)
        try:
            with torch.no_grad():
                losses = model.loss(x, samples(y))
        finally:
            hub.update_info('epoch', 0)
        up, down = ramp_up(epoch, 6), ramp_down(epoch, 6)
        head = model.head
        weights = head.loss_module
        expected = dict(
            loss_wce=up * losses['wce'],
            loss_soft=up * weights.soft_weight * losses['soft'],
            loss_sp=up * weights.sp_weight * losses['sp'],
            loss_aux=down * losses['aux'])
        for name, value in expected.items():  # two products: 4 EPS
            assert losses[name].item() == pytest.approx(value.item(),
                                                        rel=4 * EPS)
        assert losses['ramp_up'].item() == pytest.approx(up)
        assert losses['ramp_down'].item() == pytest.approx(down)
        assert 0 < losses['uncertainty_mean'].item() < 1
        assert losses['uncertainty_std'].item() >= 0
        assert set(losses) == {
            'loss_wce', 'loss_soft', 'loss_sp', 'loss_aux', 'wce', 'soft',
            'sp', 'aux', 'ramp_up', 'ramp_down', 'uncertainty_mean',
            'uncertainty_std'
        }


class TestDegenerateBatches:

    @pytest.mark.parametrize('labels', [
        [0, 0, 1, 2, 2, 2],  # class 3 absent, class 1 a singleton
        [1, 1, 1, 1],  # one class only: branch 1 has no CE sample
        [2],  # a batch of one
    ])
    def test_finite_and_every_parameter_has_a_gradient(self, labels):
        torch.manual_seed(2)
        model = tiny_dmue(K).train()
        x = torch.randn(len(labels), 3, 64, 64)
        losses = model.loss(x, samples(labels))
        for name, value in losses.items():
            assert torch.isfinite(value).all(), name
        loss_total(losses).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name

    def test_absent_branch_contributes_zero(self, model):
        torch.manual_seed(3)
        x = torch.randn(4, 3, 32, 32)
        with torch.no_grad():
            terms = model.compute_terms(x, torch.tensor([1] * 4))
        # branches 0, 2, 3 see all 4 samples; branch 1 sees none -> 0
        assert [len(a) for a in terms.aux_logits] == [4, 0, 4, 4]
        values = torch.stack([terms.wce, terms.soft, terms.sp, terms.aux])
        assert torch.isfinite(values).all()
        assert terms.aux.item() > 0


class TestPredict:

    def test_target_branch_only_without_labels(self, model, batch):
        x, _ = batch
        with torch.no_grad():
            preds = model.predict(x)
            logits = model(x)
        assert len(preds) == len(x)
        score = torch.stack([p.pred_score for p in preds])
        torch.testing.assert_close(score, F.softmax(logits, 1))
        bb = model.backbone
        feats = bb(x)[-1].mean(dim=(2, 3))
        torch.testing.assert_close(logits, model.head.fc(
            model.head.bnneck(feats)))
        assert all(p.pred_label.item() == s.argmax().item()
                   for p, s in zip(preds, score))

    def test_eval_pass_never_runs_auxiliary_branches(self, model, batch):
        calls = []
        hooks = [
            b.register_forward_hook(lambda *a: calls.append(1))
            for b in model.head.branches.modules()
        ]
        try:
            with torch.no_grad():
                model.predict(batch[0])
        finally:
            for hook in hooks:
                hook.remove()
        assert not calls


class TestReleasedCodeSwitch:

    def test_mlp_and_neck_frozen(self):
        model = tiny_dmue(K, released_code=True)
        frozen = {n for n, p in model.named_parameters()
                  if not p.requires_grad}
        assert frozen == {
            'head.uncertainty_mlp.0.weight', 'head.uncertainty_mlp.0.bias',
            'head.uncertainty_mlp.1.weight', 'head.uncertainty_mlp.2.weight',
            'head.uncertainty_mlp.2.bias', 'head.bnneck.weight',
            'head.bnneck.bias'
        }
        assert (model.head.bnneck.weight == 1).all()
        assert (model.head.bnneck.bias == 0).all()

    def test_paper_default_trains_everything(self):
        model = tiny_dmue(K)
        assert all(p.requires_grad for p in model.parameters())


class TestArguments:

    @pytest.mark.parametrize('key,value', [('temperature', 0),
                                           ('sp_weight', -1), ('ramp_a', 0)])
    def test_bad_loss_values(self, key, value):
        with pytest.raises(ValueError, match=f'model.head.loss.{key}'):
            tiny_dmue(K, loss=dict(type='DMUELoss', **{key: value}))

    def test_bad_dropout(self):
        with pytest.raises(ValueError, match='dropout'):
            tiny_dmue(K, dropout=1.0)

    @pytest.mark.parametrize('key', ['soft_weight', 'sp_weight',
                                     'temperature', 'ramp_a'])
    def test_loss_keys_on_the_head_name_their_place(self, key):
        with pytest.raises(ValueError, match=f'model.head.loss.{key}'):
            tiny_dmue(K, **{key: 1.0})

    def test_one_class_is_rejected(self):
        with pytest.raises(ValueError, match='num_classes'):
            tiny_dmue(1)

    def test_soft_labels_are_rejected(self, model, batch):
        from mmpretrain.structures import DataSample
        data = [DataSample().set_gt_score(torch.ones(K) / K)] * 2
        with pytest.raises(ValueError, match='hard labels'):
            model.loss(batch[0][:2], data)

    def test_bnneck_off(self):
        model = tiny_dmue(K, bnneck=False)
        assert model.head.bnneck is None
        losses = model.loss(torch.randn(8, 3, 32, 32), samples(LABELS[:8]))
        assert math.isfinite(loss_total(losses).item())


class TestAutocast:

    def test_terms_in_float32_under_bf16(self, model, batch):
        x, y = batch
        with torch.no_grad():
            reference_losses = model.loss(x, samples(y))
            with torch.autocast('cpu', dtype=torch.bfloat16):
                losses = model.loss(x, samples(y))
        for name in ('loss_wce', 'loss_soft', 'loss_sp', 'loss_aux'):
            assert losses[name].dtype == torch.float32, name
            # bf16 keeps 8 significant bits (eps 2^-7 = 0.8%) in the
            # branches; the terms stay within a few of its eps
            assert losses[name].item() == pytest.approx(
                reference_losses[name].item(), rel=0.1), name

    def test_float16_branch_gradients_under_a_loss_scale(self):
        """As AmpOptimWrapper on a GPU: float16 autocast and the loss
        multiplied by 65536 before backward; the unscaled branch gradients
        match float32."""
        torch.manual_seed(0)
        model = tiny_dmue(K, dropout=0.0).train()  # default init: std 0.001
        x, data = torch.randn(12, 3, 32, 32), samples(LABELS)

        def branch_grads(amp: bool, scale: float):
            m = copy.deepcopy(model)
            with torch.autocast('cpu', dtype=torch.float16, enabled=amp):
                total = loss_total(m.loss(x, data))
            (total * scale).backward()
            return [
                torch.cat([p.grad.flatten() / scale for p in b.parameters()])
                for b in m.head.branches
            ]

        eps16 = torch.finfo(torch.float16).eps
        for g32, g16 in zip(branch_grads(False, 1.0),
                            branch_grads(True, 65536.0)):
            assert torch.isfinite(g16).all()
            # float16 keeps 11 bits (eps 2^-10); a branch gradient goes
            # through ~60 rounded float16 operations (trunk and branch,
            # forward and backward) and the BN-weight gradients cancel:
            # within 2^7 eps of the gradient's norm. A gradient computed
            # before the scale exists (flushed in float16's subnormal range)
            # would be off by its whole norm.
            err = (g16 - g32).norm() / g32.norm()
            assert err < 128 * eps16, err / eps16
