"""DMUEHead vs. an independent computation of the spec's formulas."""
import math

import pytest
import torch
import torch.nn.functional as F
from dmue_testing import loss_total, one_thread, samples, tiny_dmue  # noqa
from mmengine.logging import MessageHub

from dmue_mm.models.losses import ramp_down, ramp_up

K = 4
LABELS = [0, 1, 2, 3, 2, 0, 1, 3, 3, 0, 2, 1]  # every class 3 times


def reference(model, x, y, T=1.2):
    """DMUE terms written from the spec (§2-§3), BN in eval, no dropout."""
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
            stage_input = model.adapter.forward_trunk(x)
            f = model.adapter.forward_stage(model.adapter.target_stage,
                                            stage_input)
            terms, sigma = model.head.loss_terms(stage_input, f, y)
        torch.testing.assert_close(sigma, sigma_ref, atol=1e-5, rtol=0)
        assert sigma.std() > 1e-3  # the MLP sees varied inputs
        for name in ('wce', 'soft', 'aux'):
            assert terms[name].item() == pytest.approx(
                ref[name].item(), abs=1e-5), name
        assert terms['sp'].item() == pytest.approx(ref['sp'].item(),
                                                   rel=1e-4)
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
        expected = dict(
            loss_wce=up * losses['wce'],
            loss_soft=up * head.soft_weight * losses['soft'],
            loss_sp=up * head.sp_weight * losses['sp'],
            loss_aux=down * losses['aux'])
        for name, value in expected.items():
            assert losses[name].item() == pytest.approx(value.item(),
                                                        rel=1e-6)
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
            si = model.adapter.forward_trunk(x)
            f = model.adapter.forward_stage(model.adapter.target_stage, si)
            terms, _ = model.head.loss_terms(si, f, torch.tensor([1] * 4))
        # branches 0, 2, 3 see all 4 samples; branch 1 sees none -> 0
        assert torch.isfinite(torch.stack(list(terms.values()))).all()
        assert terms['aux'].item() > 0


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

    @pytest.mark.parametrize('key,value,match', [
        ('temperature', 0, 'temperature'),
        ('dropout', 1.0, 'dropout'),
        ('sp_weight', -1, 'sp_weight'),
        ('ramp_a', 0, 'ramp_a'),
    ])
    def test_bad_values(self, key, value, match):
        with pytest.raises(ValueError, match=match):
            tiny_dmue(K, **{key: value})

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
            assert losses[name].item() == pytest.approx(
                reference_losses[name].item(), rel=0.1), name
