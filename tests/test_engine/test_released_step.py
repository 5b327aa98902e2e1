"""One optimiser step of the released recipe in its eval phase (BN on
running statistics, no dropout: deterministic) equals an independent
reference: the losses written from the DMUE formulas in float64, their
gradients by autograd, and Adam (coupled weight decay, the trunk and
classifier groups at their learning rates of that epoch) written out; the
frozen uncertainty MLP and BN-neck stay unchanged."""
import copy
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from conftest import CONFIGS
from dmue_testing import one_thread, samples, tiny_dmue  # noqa: F401
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import PARAM_SCHEDULERS

import dmue_mm  # noqa: F401

K = 4
LABELS = [0, 1, 2, 3, 1, 0, 3, 2, 2, 0, 1, 3]
EPOCH, ALPHA = 7, 6
# the released step tables at epoch 7 (lr1 5e-5 for epochs 6-11, lr2 5e-4
# for epochs 4-7) and the ramps exp(-5 (1 - e/a)^2), exp(-(1 - a/e)^2)
LR = dict(trunk=5e-5, classifier=5e-4)
R_UP = 1.0
R_DOWN = math.exp(-(1 - ALPHA / EPOCH)**2)
W, GAMMA, T = 0.5, 1000.0, 1.2
BETAS, EPS, WD, STEPS_BEFORE = (0.9, 0.999), 1e-8, 1e-4, 10
# where the reference reads the parts of the model (docs/head.md)
PARTS = dict(neck='head.bnneck', fc='head.fc', mlp='head.uncertainty_mlp',
             aux_fc='head.aux_fcs.{c}', branch='head.branches.{c}.layer4')


def is_trunk(name: str) -> bool:
    return name.startswith('backbone.') or '.branches.' in name


def reference_loss(model, x, y):
    """L = r_up wce + r_up (w soft + gamma sp) + r_down aux, eval mode."""
    part = model.get_submodule
    bb = model.backbone
    feat = bb.maxpool(bb.relu(bb.norm1(bb.conv1(x))))
    for name in bb.res_layers[:-1]:
        feat = getattr(bb, name)(feat)
    gap = lambda t: t.mean(dim=(2, 3))  # noqa: E731
    neck, fc = part(PARTS['neck']), part(PARTS['fc'])

    def branch(c, rows):
        out = part(PARTS['branch'].format(c=c))(feat[rows])
        return part(PARTS['aux_fc'].format(c=c))(neck(gap(out)))

    f = gap(bb.layer4(feat))
    h = neck(f)
    z = fc(h)
    onehot = F.one_hot(y, K).to(f.dtype)
    norms = f.norm(dim=1)
    cos = (f @ f.t()) / (norms[:, None] * norms[None, :])
    m = torch.stack([cos[:, y == c].mean(1) for c in range(K)], 1)
    lo, hi = m.min(1, keepdim=True).values, m.max(1, keepdim=True).values
    m = (m - lo) / (hi - lo)
    sigma = torch.sigmoid(part(PARTS['mlp'])(torch.cat([m, onehot], 1)))
    wce = F.cross_entropy(sigma * z, y)
    L = torch.zeros_like(z)
    for c in range(K):
        jdx = (y == c).nonzero()[:, 0]
        q = F.softmax(branch(c, jdx), 1)**(1 / T)
        q = (q / q.sum(1, keepdim=True)).detach()
        L[jdx] = torch.cat([q[:, :c], q.new_zeros(len(jdx), 1), q[:, c:]], 1)
    soft = ((F.softmax(z, 1) * (1 - onehot) - L)**2).mean()
    g_tar = h @ h.t()
    aux = sp = 0.0
    for c in range(K):
        idx = (y != c).nonzero()[:, 0]
        a = branch(c, idx)
        target = torch.where(y[idx] > c, y[idx] - 1, y[idx])
        aux = aux + F.cross_entropy(a, target) / K
        g_a = F.normalize(a @ a.t(), p=2, dim=1)
        g_t = F.normalize(g_tar[idx][:, idx], p=2, dim=1)
        sp = sp + ((g_a - g_t)**2).mean() / K
    terms = dict(wce=wce, soft=soft, sp=sp, aux=aux)
    total = R_UP * wce + R_UP * (W * soft + GAMMA * sp) + R_DOWN * aux
    return total, terms


def randomise(model, seed=0):
    """Non-trivial head weights and neck statistics (the classifiers'
    init std 0.001 makes every term nearly constant)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith('backbone.'):
                continue
            noise = torch.randn(p.shape, generator=gen)
            if is_trunk(name):
                p.add_(noise * 0.05)
            else:
                p.copy_(noise * 0.3)
        for name, b in model.named_buffers():
            if not is_trunk(name) and name.endswith('running_mean'):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
            elif not is_trunk(name) and name.endswith('running_var'):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)


def optimiser_at_epoch(model):
    """The recipe's optimiser and schedule, stepped to EPOCH."""
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(CONFIGS, 'dmue', 'res18_rafdb.py'))
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    scheduler = PARAM_SCHEDULERS.build(
        dict(cfg.param_scheduler, optimizer=wrapper))
    for _ in range(EPOCH):
        scheduler.step()
    return wrapper


def test_one_eval_phase_step_matches_reference():
    torch.manual_seed(0)
    model = tiny_dmue(K, released_code=True,
                      loss=dict(type='DMUELoss', ramp_a=ALPHA))
    randomise(model)
    model.eval()  # the released eval phase
    MessageHub.get_current_instance().update_info('epoch', EPOCH)
    x = torch.randn(len(LABELS), 3, 32, 32)
    y = torch.tensor(LABELS)
    names = {id(p): n for n, p in model.named_parameters()}
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # the reference, in float64, on a copy
    ref = copy.deepcopy(model).double()
    ref_loss, ref_terms = reference_loss(ref, x.double(), y)
    ref_loss.backward()
    ref_grads = {n: p.grad for n, p in ref.named_parameters()
                 if p.requires_grad}

    wrapper = optimiser_at_epoch(model)
    groups = {g['name']: g for g in wrapper.optimizer.param_groups}
    assert {n: g['lr'] for n, g in groups.items()} == LR
    # a resumed Adam state, so that the step depends on the gradient size
    gen = torch.Generator().manual_seed(1)
    state0 = {}
    for name, group in groups.items():
        for p in group['params']:
            g = ref_grads[names[id(p)]].float()
            scale = g.pow(2).mean().clamp_min(1e-20)
            state0[names[id(p)]] = dict(
                step=torch.tensor(float(STEPS_BEFORE)),
                exp_avg=torch.randn(p.shape, generator=gen) * scale.sqrt(),
                exp_avg_sq=(torch.rand(p.shape, generator=gen) + 0.5) *
                scale)
            wrapper.optimizer.state[p] = copy.deepcopy(state0[names[id(p)]])
    grads = {}
    wrapper.optimizer.register_step_pre_hook(lambda *a: grads.update({
        n: p.grad.detach().clone()
        for n, p in model.named_parameters() if p.grad is not None
    }))

    log = model.train_step(
        dict(inputs=x, data_samples=samples(LABELS)), optim_wrapper=wrapper)

    # losses: float32 sums of a few hundred terms vs float64
    for name, value in ref_terms.items():
        assert log[name].item() == pytest.approx(value.item(), rel=1e-5), name
    assert log['loss'].item() == pytest.approx(ref_loss.item(), rel=1e-5)

    # gradients: every trainable parameter, tensor-norm relative
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen, 'released_code=True freezes the MLP and the BN-neck'
    assert set(grads) == set(ref_grads)
    for name, ref_grad in ref_grads.items():
        error = (grads[name].double() - ref_grad).norm()
        assert error <= 1e-5 * ref_grad.norm() + 1e-30, name

    # Adam: coupled decay, bias corrections, per-group lr
    state = model.state_dict()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(state[name], before[name]), name
            assert name not in state0  # not in the optimiser
            continue
        lr = LR['trunk' if is_trunk(name) else 'classifier']
        old = before[name].double()
        g = ref_grads[name] + WD * old
        s = state0[name]
        t = STEPS_BEFORE + 1
        m = BETAS[0] * s['exp_avg'].double() + (1 - BETAS[0]) * g
        v = BETAS[1] * s['exp_avg_sq'].double() + (1 - BETAS[1]) * g * g
        m_hat = m / (1 - BETAS[0]**t)
        v_hat = v / (1 - BETAS[1]**t)
        ref_step = -lr * m_hat / (v_hat.sqrt() + EPS)
        step = state[name].double() - old
        # float32 storage of the new value: half an ulp of |p|
        tol = 1e-5 * ref_step.abs().max() + 2**-24 * old.abs()
        assert ((step - ref_step).abs() <= tol).all(), name
    # the eval phase: no BN statistic moves
    for name, value in before.items():
        if 'running' in name or 'num_batches' in name:
            assert torch.equal(state[name], value), name
