"""The original DMUE checkpoints, rebuilt with random values in the formats
of docs/deploy.md ("Key mapping of the original formats"), and an
independent re-implementation of the original forward and losses (its
``models/`` and ``losses/``) that reads those raw tensors with
``torch.nn.functional``.

Nothing here uses the plugin: the converters are tested against it.
"""
import math
from collections import OrderedDict
from typing import Dict

import torch
import torch.nn.functional as F

# (block type, blocks per stage) of the two original backbones
ARCHS = {
    'r18': ('basic', [2, 2, 2, 2]),
    'r50ibn': ('bottleneck', [3, 4, 6, 3])
}
BN_ENTRIES = ('weight', 'bias', 'running_mean', 'running_var',
              'num_batches_tracked')
EPS = 1e-5


class Random:
    """Seeded random tensors with scales that keep a deep net finite
    (``meta``: shapes only, no memory)."""

    def __init__(self, seed: int, meta: bool = False):
        self.gen = torch.Generator().manual_seed(seed)
        self.meta = meta

    def normal(self, *shape, std=1.0):
        if self.meta:
            return torch.empty(*shape, device='meta')
        return torch.randn(*shape, generator=self.gen) * std

    def uniform(self, *shape, low=0.0, high=1.0):
        if self.meta:
            return torch.empty(*shape, device='meta')
        return low + (high - low) * torch.rand(*shape, generator=self.gen)

    def conv(self, out_c, in_c, k):
        return self.normal(
            out_c, in_c, k, k, std=math.sqrt(2 / (in_c * k * k)))

    def bn(self, channels, last=False) -> Dict[str, torch.Tensor]:
        """BN entries; the last BN of a residual block is damped so the
        residual sums stay moderate over 16 blocks."""
        low, high = (0.2, 0.5) if last else (0.5, 1.5)
        return dict(
            weight=self.uniform(channels, low=low, high=high),
            bias=self.normal(channels, std=0.1),
            running_mean=self.normal(channels, std=0.1),
            running_var=self.uniform(channels, low=0.5, high=1.5),
            num_batches_tracked=torch.tensor(100))


def _put_bn(sd, prefix, entries):
    for name in BN_ENTRIES:
        sd[f'{prefix}.{name}'] = entries[name]


def stage_tensors(rnd: Random, prefix: str, arch: str, stage: int,
                  sd: 'OrderedDict') -> None:
    """One residual stage (``layer{stage+1}``) under ``prefix``."""
    kind, blocks = ARCHS[arch]
    planes = 64 * 2**stage
    expansion = 1 if kind == 'basic' else 4
    inplanes = 64 if stage == 0 else 64 * 2**(stage - 1) * expansion
    ibn = kind == 'bottleneck' and stage < 3
    for b in range(blocks[stage]):
        p = f'{prefix}.{b}'
        cin = inplanes if b == 0 else planes * expansion
        if kind == 'basic':
            sd[f'{p}.conv1.weight'] = rnd.conv(planes, cin, 3)
            _put_bn(sd, f'{p}.bn1', rnd.bn(planes))
            sd[f'{p}.conv2.weight'] = rnd.conv(planes, planes, 3)
            _put_bn(sd, f'{p}.bn2', rnd.bn(planes, last=True))
        else:
            sd[f'{p}.conv1.weight'] = rnd.conv(planes, cin, 1)
            if ibn:
                half = planes // 2
                first = rnd.bn(half)
                sd[f'{p}.bn1.IN.weight'] = first['weight']
                sd[f'{p}.bn1.IN.bias'] = first['bias']
                _put_bn(sd, f'{p}.bn1.BN', rnd.bn(planes - half))
            else:
                _put_bn(sd, f'{p}.bn1', rnd.bn(planes))
            sd[f'{p}.conv2.weight'] = rnd.conv(planes, planes, 3)
            _put_bn(sd, f'{p}.bn2', rnd.bn(planes))
            sd[f'{p}.conv3.weight'] = rnd.conv(planes * expansion, planes, 1)
            _put_bn(sd, f'{p}.bn3', rnd.bn(planes * expansion, last=True))
        if b == 0 and (stage > 0 or kind == 'bottleneck'):
            sd[f'{p}.downsample.0.weight'] = rnd.conv(planes * expansion,
                                                      inplanes, 1)
            _put_bn(sd, f'{p}.downsample.1', rnd.bn(planes * expansion))


def trunk_tensors(rnd: Random, prefix: str, arch: str) -> 'OrderedDict':
    """Stem + layer1..3 under ``prefix`` (``base`` / ``feat_net``)."""
    sd = OrderedDict()
    sd[f'{prefix}.conv1.weight'] = rnd.conv(64, 3, 7)
    _put_bn(sd, f'{prefix}.bn1', rnd.bn(64))
    for stage in range(3):
        stage_tensors(rnd, f'{prefix}.layer{stage + 1}', arch, stage, sd)
    return sd


def feat_dim(arch: str) -> int:
    return 512 if arch == 'r18' else 2048


def snapshot(arch: str,
             num_classes: int,
             bnneck: bool,
             seed: int = 0,
             module: bool = False,
             meta: bool = False) -> 'OrderedDict':
    """A DMUE training snapshot with the exact key names and shapes of
    the original multi-branch model (``module.`` prefixed when ``module``;
    ``meta``: shapes only)."""
    rnd = Random(seed, meta)
    K, D = num_classes, feat_dim(arch)
    sd = trunk_tensors(rnd, 'base', arch)
    for b in range(K + 1):
        stage_tensors(rnd, f'base.layer4_{b}', arch, 3, sd)
    for b in range(K + 1):
        rows = K if b == K else K - 1
        sd[f'classifiers.{b}.weight'] = rnd.normal(
            rows, D, std=2 / math.sqrt(D))
    sd['project_w.0.weight'] = rnd.normal(K, 2 * K, std=0.5)
    sd['project_w.0.bias'] = rnd.normal(K, std=0.1)
    sd['project_w.1.weight'] = rnd.uniform(1, low=0.2, high=0.3)
    sd['project_w.2.weight'] = rnd.normal(1, K, std=0.5)
    sd['project_w.2.bias'] = rnd.normal(1, std=0.1)
    if bnneck:
        neck = rnd.bn(D)
        neck['running_var'] = rnd.uniform(D, low=0.5, high=4.0)
        neck['running_mean'] = rnd.normal(D, std=0.5)
        _put_bn(sd, 'bottleneck', neck)
    if module:
        sd = OrderedDict((f'module.{k}', v) for k, v in sd.items())
    return sd


def target_only(snap: 'OrderedDict', num_classes: int) -> 'OrderedDict':
    """The original ``convert_weights.py`` rules, applied to a
    snapshot without ``module.``."""
    last = num_classes
    out = OrderedDict()
    for key, value in snap.items():
        if key.startswith('base.layer4_'):
            if key.startswith(f'base.layer4_{last}.'):
                out[key.replace(f'layer4_{last}.', 'layer4.')] = value
        elif key.startswith('project_w'):
            continue
        elif key.startswith('classifiers.'):
            if key == f'classifiers.{last}.weight':
                out['classifiers.0.weight'] = value
        else:
            out[key] = value
    return out


def msceleb(arch: str, num_ids: int = 10, seed: int = 0) -> dict:
    """An MS-Celeb-1M pretraining checkpoint (the original ``pretrain/``)."""
    rnd = Random(seed)
    sd = trunk_tensors(rnd, 'feat_net', arch)
    stage_tensors(rnd, 'feat_net.layer4', arch, 3, sd)
    D = feat_dim(arch)
    sd['loss_layer.weight'] = rnd.normal(D, num_ids)
    if arch == 'r50ibn':
        sd['feat_net.fc.weight'] = rnd.normal(1000, D)
        sd['feat_net.fc.bias'] = rnd.normal(1000)
    return {'state_dict': sd, 'epoch': 17, 'batch_id': 0}


# ----------------------------------------------------------------------
# the original forward, functional
# ----------------------------------------------------------------------
def _bn(x, sd, p):
    return F.batch_norm(x, sd[f'{p}.running_mean'], sd[f'{p}.running_var'],
                        sd[f'{p}.weight'], sd[f'{p}.bias'], False, 0.0, EPS)


def _norm1(x, sd, p):
    if f'{p}.IN.weight' not in sd:
        return _bn(x, sd, p)
    half = sd[f'{p}.IN.weight'].numel()
    first = F.instance_norm(
        x[:, :half],
        weight=sd[f'{p}.IN.weight'],
        bias=sd[f'{p}.IN.bias'],
        eps=EPS)
    return torch.cat([first, _bn(x[:, half:], sd, f'{p}.BN')], 1)


def _block(x, sd, p, stride):
    if f'{p}.conv3.weight' in sd:  # bottleneck, stride on the 3x3
        out = F.relu(
            _norm1(F.conv2d(x, sd[f'{p}.conv1.weight']), sd, f'{p}.bn1'))
        out = F.relu(
            _bn(
                F.conv2d(
                    out, sd[f'{p}.conv2.weight'], stride=stride, padding=1),
                sd, f'{p}.bn2'))
        out = _bn(F.conv2d(out, sd[f'{p}.conv3.weight']), sd, f'{p}.bn3')
    else:
        out = F.relu(
            _bn(
                F.conv2d(x, sd[f'{p}.conv1.weight'], stride=stride, padding=1),
                sd, f'{p}.bn1'))
        out = _bn(
            F.conv2d(out, sd[f'{p}.conv2.weight'], padding=1), sd, f'{p}.bn2')
    if f'{p}.downsample.0.weight' in sd:
        x = _bn(
            F.conv2d(x, sd[f'{p}.downsample.0.weight'], stride=stride), sd,
            f'{p}.downsample.1')
    return F.relu(out + x)


def run_stage(x, sd, prefix, first_stride):
    blocks = sorted({
        int(k[len(prefix) + 1:].split('.')[0])
        for k in sd if k.startswith(prefix + '.')
    })
    for b in blocks:
        x = _block(x, sd, f'{prefix}.{b}', first_stride if b == 0 else 1)
    return x


def trunk(sd, x, prefix='base'):
    """Stem (face R18: no ReLU, 2x2 max pool; R50: standard) + layer1..3."""
    x = _bn(
        F.conv2d(x, sd[f'{prefix}.conv1.weight'], stride=2, padding=3), sd,
        f'{prefix}.bn1')
    if f'{prefix}.layer1.0.conv3.weight' in sd:
        x = F.max_pool2d(F.relu(x), 3, 2, 1)
    else:
        x = F.max_pool2d(x, 2, 2)
    for stage in (1, 2, 3):
        x = run_stage(x, sd, f'{prefix}.layer{stage}', 1 if stage == 1 else 2)
    return x


class OriginalModel:
    """The original multi-branch model in eval mode, from a snapshot."""

    def __init__(self, sd: 'OrderedDict', num_classes: int, T: float = 1.2):
        self.sd = OrderedDict(
            (k[len('module.'):] if k.startswith('module.') else k, v)
            for k, v in sd.items())
        self.K = num_classes
        self.T = T

    def branch(self, F3, b):
        """GAP feature of ``layer4_b``."""
        return run_stage(F3, self.sd, f'base.layer4_{b}', 2).mean(dim=(2, 3))

    def neck(self, f):
        return _bn(f, self.sd, 'bottleneck') if 'bottleneck.weight' in \
            self.sd else f

    def classify(self, feats, b):
        return feats @ self.sd[f'classifiers.{b}.weight'].t()

    def target_logits(self, x):
        f = self.branch(trunk(self.sd, x), self.K)
        return self.classify(self.neck(f), self.K)

    def losses(self, x, y) -> Dict[str, torch.Tensor]:
        """The four loss terms of the original's train.py (BN eval, no
        dropout)."""
        sd, K = self.sd, self.K
        F3 = trunk(sd, x)
        f = self.branch(F3, K)
        h = self.neck(f)
        z = self.classify(h, K)
        onehot = F.one_hot(y, K).float()
        norms = f.norm(dim=1)
        cos = (f @ f.t()) / (norms[:, None] * norms[None, :])
        m = torch.stack([cos[:, y == c].mean(1) for c in range(K)], 1)
        lo, hi = m.min(1, keepdim=True).values, m.max(1, keepdim=True).values
        m = (m - lo) / (hi - lo)
        s = torch.cat([m, onehot], 1)
        hidden = F.linear(s, sd['project_w.0.weight'], sd['project_w.0.bias'])
        hidden = F.prelu(hidden, sd['project_w.1.weight'])
        sigma = torch.sigmoid(
            F.linear(hidden, sd['project_w.2.weight'], sd['project_w.2.bias']))
        wce = F.cross_entropy(sigma * z, y)
        L = torch.zeros(len(y), K)
        g_tar = h @ h.t()
        aux = sp = 0.0
        for c in range(K):
            jdx = (y == c).nonzero()[:, 0]
            q = F.softmax(
                self.classify(self.neck(self.branch(F3[jdx], c)), c),
                1)**(1 / self.T)
            q = q / q.sum(1, keepdim=True)
            L[jdx] = torch.cat(
                [q[:, :c], torch.zeros(len(jdx), 1), q[:, c:]], 1)
            idx = (y != c).nonzero()[:, 0]
            a = self.classify(self.neck(self.branch(F3[idx], c)), c)
            aux = aux + F.cross_entropy(a, y[idx] - (y[idx] > c).long()) / K
            g_a = F.normalize(a @ a.t(), p=2, dim=1)
            g_t = F.normalize(g_tar[idx][:, idx], p=2, dim=1)
            sp = sp + ((g_a - g_t)**2).mean() / K
        soft = ((F.softmax(z, 1) * (1 - onehot) - L)**2).mean()
        return dict(wce=wce, soft=soft, sp=sp, aux=aux)


def balanced_labels(num_classes: int, per_class: int = 2) -> torch.Tensor:
    """Every class ``per_class`` times, interleaved."""
    return torch.arange(num_classes).repeat(per_class)
