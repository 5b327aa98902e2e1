"""One training step of the head: equal to the implementation it replaced,
batch-norm statistics in the released order, and ``compute_terms``.

Tolerances are multiples of float32's ``EPS`` sized by the computation.
"""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from dmue_testing import (EPS, loss_total, one_thread, samples,  # noqa
                          tiny_dmue)
from head_step_case import CASES, EPOCH, K, build_case
from mmengine.logging import MessageHub

pytestmark = pytest.mark.numeric

REFERENCE = osp.join(osp.dirname(osp.dirname(__file__)), 'data',
                     'head_step_reference.pt')


@pytest.fixture
def epoch():
    hub = MessageHub.get_current_instance()
    hub.update_info('epoch', EPOCH)
    yield EPOCH
    hub.update_info('epoch', 0)


class TestSameAsBefore:
    """The saved outputs of the previous implementation (dropout off)."""

    @pytest.mark.parametrize('case', list(CASES))
    def test_losses_and_gradients(self, case, epoch):
        saved = torch.load(REFERENCE, weights_only=True)[case]
        model, x, data = build_case(case)
        losses = model.loss(x, data)
        loss_total(losses).backward()
        assert set(losses) == set(saved['losses'])
        for name, value in saved['losses'].items():
            # the same float32 operations summed in another order over at
            # most B x K = 48 entries per mean
            assert losses[name].item() == pytest.approx(
                value.item(), rel=48 * EPS, abs=48 * EPS), name
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert set(saved['grads']) <= set(grads)
        scale = max(g.abs().max() for g in saved['grads'].values())
        for name, old in saved['grads'].items():
            # The two implementations add the K + 2 = 6 paths into the
            # trunk's gradient in another order, and convolutions reduce
            # over up to C x 3 x 3 = 576 products: each entry may differ by
            # (K + 2) sqrt(576) EPS of the largest gradient of the step.
            tol = (K + 2) * 24 * EPS * scale
            err = (grads[name] - old).abs().max()
            assert err <= tol, (name, float(err / tol))


def bn_layers(model):
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
    }


def released_order(model, x, y):
    """The released training forward, written from its description: the
    trunk, each auxiliary branch on label != c then the BN-neck (dropout
    off), the target branch and the BN-neck, each branch on label == c and
    the BN-neck. Updates the running statistics in place."""
    bb, head = model.backbone, model.head
    gap = lambda t: t.mean(dim=(2, 3))  # noqa: E731
    feat = bb.maxpool(bb.relu(bb.norm1(bb.conv1(x))))
    for name in bb.res_layers[:-1]:
        feat = getattr(bb, name)(feat)
    for c in range(K):
        idx = (y != c).nonzero()[:, 0]
        head.bnneck(gap(head.branches[c]['layer4'](feat[idx])))
    head.bnneck(gap(bb.layer4(feat)))
    for c in range(K):
        jdx = (y == c).nonzero()[:, 0]
        if len(jdx):
            head.bnneck(gap(head.branches[c]['layer4'](feat[jdx])))


class TestBatchNormOrder:

    @pytest.mark.parametrize('case', ['all_classes', 'absent_class'])
    def test_running_statistics_of_every_layer(self, case):
        model, x, data = build_case(case)
        reference = copy.deepcopy(model)
        with torch.no_grad():
            model.loss(x, data)
            released_order(reference, x, torch.tensor(CASES[case]))
        got, want = bn_layers(model), bn_layers(reference)
        assert len(got) == len(want) > 20
        for name, layer in got.items():
            for stat in ('running_mean', 'running_var'):
                a, b = getattr(layer, stat), getattr(want[name], stat)
                # a batch mean/variance over n = B x H x W values is off by
                # ~n EPS relative; 1e-5 relative covers n up to ~80, with
                # the floor for statistics near 0 at EPS times the scale
                tol = 1e-5 * b.abs() + 64 * EPS * b.abs().max()
                assert ((a - b).abs() <= tol).all(), (name, stat)
            assert layer.num_batches_tracked == want[name].num_batches_tracked

    def test_another_order_gives_other_statistics(self):
        """The check above can fail: target -> latent -> auxiliary (the
        previous order) leaves other BN-neck statistics."""
        model, x, data = build_case('all_classes')
        other = copy.deepcopy(model)
        y = torch.tensor(CASES['all_classes'])
        with torch.no_grad():
            model.loss(x, data)
            bb, head = other.backbone, other.head
            gap = lambda t: t.mean(dim=(2, 3))  # noqa: E731
            feat = bb.layer3(bb.layer2(bb.layer1(bb.maxpool(bb.relu(
                bb.norm1(bb.conv1(x)))))))
            head.bnneck(gap(bb.layer4(feat)))
            for c in range(K):  # latent distributions, then auxiliary
                head.bnneck(gap(head.branches[c]['layer4'](feat[y == c])))
            for c in range(K):
                head.bnneck(gap(head.branches[c]['layer4'](feat[y != c])))
        a, b = model.head.bnneck.running_var, head.bnneck.running_var
        assert ((a - b).abs() / b.abs()).max() > 1e-3


class TestComputeTerms:

    def test_shapes_and_aux_rows_in_batch_order(self):
        model, x, data = build_case('all_classes')
        labels = torch.tensor(CASES['all_classes'])
        with torch.no_grad():
            terms = model.eval().compute_terms(x, labels)
        B = len(labels)
        assert terms.target_logits.shape == (B, K)
        assert terms.uncertainty.shape == (B, )
        assert terms.soft_targets.shape == (B, K)
        assert len(terms.aux_logits) == K
        for c, logits in enumerate(terms.aux_logits):
            assert logits.shape == (int((labels != c).sum()), K - 1)
        for name in ('wce', 'soft', 'sp', 'aux'):
            assert getattr(terms, name).dim() == 0, name
        # soft targets: 0 at the label, a distribution over the others
        assert (terms.soft_targets.gather(1, labels[:, None]) == 0).all()
        torch.testing.assert_close(terms.soft_targets.sum(1),
                                   torch.ones(B), atol=8 * K * EPS, rtol=0)

    def test_aux_logits_are_the_branch_on_those_rows(self):
        model, x, _ = build_case('all_classes')
        labels = torch.tensor(CASES['all_classes'])
        model.eval()
        with torch.no_grad():
            terms = model.compute_terms(x, labels)
            trunk = model.adapter.forward_trunk(x)
            head = model.head
            for c in range(K):
                rows = trunk.take((labels != c).nonzero()[:, 0])
                feats = model.adapter.forward_stage(head.branches[c], rows)
                expected = head.aux_fcs[c](head.bnneck(feats))
                # same operations on the same rows (a view vs a copy)
                torch.testing.assert_close(terms.aux_logits[c], expected,
                                           atol=64 * EPS, rtol=64 * EPS)

    @pytest.mark.parametrize('mode', ['train', 'eval'])
    def test_terms_equal_the_loss_dict(self, mode, epoch):
        model, x, data = build_case('all_classes')
        getattr(model, mode)()
        labels = torch.tensor(CASES['all_classes'])
        with torch.no_grad():
            terms = model.compute_terms(x, labels)
            losses = copy.deepcopy(model).loss(x, data) if mode == 'train' \
                else model.loss(x, data)
        for name in ('wce', 'soft', 'sp', 'aux'):
            # the same computation twice (train mode: from the same
            # starting statistics): equal up to reduction order
            assert getattr(terms, name).item() == pytest.approx(
                losses[name].item(), rel=16 * EPS), name

    def test_eval_mode_needs_no_runner_and_is_deterministic(self):
        torch.manual_seed(3)
        model = tiny_dmue(K).eval()  # dropout 0.5: off in eval mode
        x = torch.randn(8, 3, 32, 32)
        labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
        with torch.no_grad():
            a = model.compute_terms(x, labels)
            b = model.compute_terms(x, labels)
        assert torch.equal(a.target_logits, b.target_logits)
        assert a.wce.item() == b.wce.item()
        probs = F.softmax(model(x), dim=1)
        torch.testing.assert_close(F.softmax(a.target_logits, 1), probs)
