"""FaceResNet and ResNetIBN against the original DMUE models.

The original key sets are generated here from the released checkpoints' key
patterns (``base.*``, ``base.layer4_{b}.*``, ``classifiers.{b}.weight``,
``project_w.*``, ``bottleneck.*``; see docs/deploy.md); the released
parameter counts (K=8: multi-branch R18 78.36M, target R18 11.18M,
multi-branch R50-IBN 143.36M, target R50-IBN 23.53M) are rebuilt from the
backbones plus the DMUE heads' sizes (BN-neck, bias-free classifiers,
uncertainty MLP).
"""
import re
from typing import Set

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

import dmue_mm  # noqa: F401  registers the backbones
from dmue_mm.models.backbones import IBN

BN_ENTRIES = ('weight', 'bias', 'running_mean', 'running_var',
              'num_batches_tracked')
K = 8  # classes of the released key and parameter counts

# Per architecture: blocks per stage, convs per block, IBN per stage,
# downsample in the first block of each stage (released models: IBN in the
# Bottlenecks of layer1-3, a 1x1 downsample where the shape changes).
ARCH = {
    'r18':
    dict(blocks=(2, 2, 2, 2), convs=2, ibn=(False, ) * 4,
         downsample=(False, True, True, True), dim=512),
    'r50ibn':
    dict(blocks=(3, 4, 6, 3), convs=3, ibn=(True, True, True, False),
         downsample=(True, ) * 4, dim=2048),
}
BACKBONE_CFG = {
    'r18': dict(type='FaceResNet', depth=18),
    'r50ibn': dict(type='ResNetIBN', depth=50),
}
PROJECT_W_KEYS = {
    'project_w.0.weight', 'project_w.0.bias', 'project_w.1.weight',
    'project_w.2.weight', 'project_w.2.bias'
}


def bn_keys(prefix: str) -> Set[str]:
    return {f'{prefix}.{entry}' for entry in BN_ENTRIES}


def stage_keys(prefix: str, arch: str, stage: int) -> Set[str]:
    """Original keys of one stage (``prefix`` = ``base.layer2`` etc.)."""
    spec = ARCH[arch]
    keys = set()
    for block in range(spec['blocks'][stage]):
        name = f'{prefix}.{block}'
        for i in range(1, spec['convs'] + 1):
            keys.add(f'{name}.conv{i}.weight')
            if i == 1 and spec['ibn'][stage]:
                keys |= {f'{name}.bn1.IN.weight', f'{name}.bn1.IN.bias'}
                keys |= bn_keys(f'{name}.bn1.BN')
            else:
                keys |= bn_keys(f'{name}.bn{i}')
    if spec['downsample'][stage]:
        keys.add(f'{prefix}.0.downsample.0.weight')
        keys |= bn_keys(f'{prefix}.0.downsample.1')
    return keys


def trunk_keys(arch: str) -> Set[str]:
    keys = {'base.conv1.weight'} | bn_keys('base.bn1')
    for stage in range(3):
        keys |= stage_keys(f'base.layer{stage + 1}', arch, stage)
    return keys


def multibranch_keys(arch: str, bnneck: bool) -> Set[str]:
    """Spec §5.2: trunk, K+1 layer4 copies, K+1 classifiers, MLP, neck."""
    keys = trunk_keys(arch)
    for branch in range(K + 1):
        keys |= stage_keys(f'base.layer4_{branch}', arch, 3)
    keys |= {f'classifiers.{branch}.weight' for branch in range(K + 1)}
    keys |= PROJECT_W_KEYS
    return keys | (bn_keys('bottleneck') if bnneck else set())


def target_keys(arch: str, bnneck: bool) -> Set[str]:
    """Spec §5.4: the deploy model (trunk, one layer4, neck, classifier)."""
    keys = trunk_keys(arch) | stage_keys('base.layer4', arch, 3)
    keys.add('classifiers.0.weight')
    return keys | (bn_keys('bottleneck') if bnneck else set())


def strip_base(keys: Set[str]) -> Set[str]:
    return {k[len('base.'):] for k in keys if k.startswith('base.')}


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dmue_param_counts(backbone, dim: int, bnneck: bool):
    """(target, multi-branch) parameter counts of the released models, K=8."""
    total, layer4 = num_params(backbone), num_params(backbone.layer4)
    neck = 2 * dim if bnneck else 0
    mlp = (2 * K * K + K) + 1 + (K + 1)  # Linear(2K,K), PReLU, Linear(K,1)
    target = total + neck + K * dim
    multi = (total - layer4) + (K + 1) * layer4 + K * (K - 1) * dim \
        + K * dim + mlp + neck
    return target, multi


def forward_with_stem(net, x):
    """Backbone outputs and the stem output (the input of ``layer1``)."""
    stem = []
    handle = net.layer1.register_forward_pre_hook(
        lambda module, args: stem.append(args[0]))
    with torch.no_grad():
        outs = net(x)
    handle.remove()
    return stem[0], outs


@pytest.fixture(scope='module')
def backbones():
    return {arch: MODELS.build(cfg) for arch, cfg in BACKBONE_CFG.items()}


class TestOriginalKeys:

    def test_spec_counts(self):
        assert len(multibranch_keys('r18', bnneck=True)) == 379
        assert len(target_keys('r18', bnneck=True)) == 126
        # 843 needs the BN-neck: the released count was taken with bnneck=True
        assert len(multibranch_keys('r50ibn', bnneck=True)) == 843
        assert len(multibranch_keys('r50ibn', bnneck=False)) == 838

    @pytest.mark.parametrize('arch,count', [('r18', 120), ('r50ibn', 344)])
    def test_backbone_keys_equal_original(self, backbones, arch, count):
        keys = set(backbones[arch].state_dict())
        assert keys == strip_base(target_keys(arch, bnneck=True))
        assert len(keys) == count

    @pytest.mark.parametrize('arch', ['r18', 'r50ibn'])
    def test_target_branch_maps_one_to_one(self, backbones, arch):
        # multi-branch checkpoint: keep the trunk and layer4_K as layer4
        kept = set()
        for key in multibranch_keys(arch, bnneck=True):
            match = re.match(r'base\.layer4_(\d+)\.(.*)', key)
            if match is None:
                kept.add(key)
            elif int(match.group(1)) == K:
                kept.add(f'base.layer4.{match.group(2)}')
        assert strip_base(kept) == set(backbones[arch].state_dict())

    def test_shapes_of_key_tensors(self, backbones):
        r18 = backbones['r18'].state_dict()
        assert r18['conv1.weight'].shape == (64, 3, 7, 7)
        assert r18['layer4.0.downsample.0.weight'].shape == (512, 256, 1, 1)
        r50 = backbones['r50ibn'].state_dict()
        assert r50['layer1.0.bn1.IN.weight'].shape == (32, )
        assert r50['layer3.5.bn1.BN.running_mean'].shape == (128, )
        assert r50['layer4.2.bn1.weight'].shape == (512, )


class TestParameterCounts:

    def test_face_resnet18(self, backbones):
        target, multi = dmue_param_counts(backbones['r18'], 512, bnneck=True)
        assert num_params(backbones['r18']) == 11_176_512
        assert round(target / 1e6, 2) == 11.18
        assert round(multi / 1e6, 2) == 78.36

    def test_resnet50_ibn(self, backbones):
        # IN affine and BN affine have the same size: as ResNet-50
        assert num_params(backbones['r50ibn']) == 23_508_032
        target, multi = dmue_param_counts(
            backbones['r50ibn'], 2048, bnneck=True)
        assert round(target / 1e6, 2) == 23.53
        assert round(multi / 1e6, 2) == 143.36
        # without the neck the target model has 23.52M: the released 23.53M,
        # like its 843 keys, was measured with bnneck=True
        target_no_neck, _ = dmue_param_counts(
            backbones['r50ibn'], 2048, bnneck=False)
        assert round(target_no_neck / 1e6, 2) == 23.52


class TestShapes:

    @pytest.mark.parametrize('arch,channels', [('r18', (64, 128, 256, 512)),
                                               ('r50ibn',
                                                (256, 512, 1024, 2048))])
    def test_shapes_224(self, arch, channels):
        net = MODELS.build(dict(BACKBONE_CFG[arch], out_indices=(0, 1, 2, 3)))
        stem, outs = forward_with_stem(net, torch.rand(1, 3, 224, 224))
        assert stem.shape == (1, 64, 56, 56)
        assert [tuple(o.shape[1:]) for o in outs] == [
            (c, 56 // 2**i, 56 // 2**i) for i, c in enumerate(channels)
        ]


class TestFaceResNet:

    def test_stem_matches_reference_without_relu(self):
        torch.manual_seed(0)
        net = MODELS.build(dict(type='FaceResNet', depth=18))
        net.eval()  # MMPretrain's ResNet.train() returns None
        bn = net.bn1
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()
        bn.bias.data.normal_()
        x = torch.randn(2, 3, 64, 64)
        stem, _ = forward_with_stem(net, x)
        with torch.no_grad():
            ref = F.conv2d(x, net.conv1.weight, stride=2, padding=3)
            ref = F.batch_norm(ref, bn.running_mean, bn.running_var,
                               bn.weight, bn.bias, False, 0.0, bn.eps)
            ref = F.max_pool2d(ref, kernel_size=2, stride=2)
        torch.testing.assert_close(stem, ref, rtol=1e-5, atol=1e-5)
        # no ReLU: negative BN outputs survive the max-pool
        assert (stem < 0).float().mean() > 0.1

    def test_weights_load_into_mmpretrain_resnet(self):
        face = MODELS.build(dict(type='FaceResNet', depth=18))
        plain = MODELS.build(dict(type='ResNet', depth=18))
        plain.load_state_dict(face.state_dict(), strict=True)
        face.eval()
        plain.eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            # same names and shapes, different stem numbers
            assert not torch.allclose(face(x)[0], plain(x)[0])

    def test_depth_34_and_stem_relu_option(self):
        net = MODELS.build(dict(type='FaceResNet', depth=34, stem_relu=True))
        assert len(net.layer3) == 6
        assert isinstance(net.relu, torch.nn.ReLU)

    @pytest.mark.parametrize(
        'cfg,match',
        [(dict(depth=50), 'depth=50'), (dict(deep_stem=True), 'deep_stem')])
    def test_bad_arguments(self, cfg, match):
        with pytest.raises(ValueError, match=match):
            MODELS.build(dict(type='FaceResNet', **cfg))


class TestResNetIBN:

    def test_ibn_layout(self, backbones):
        net = backbones['r50ibn']
        for stage, planes in zip((1, 2, 3), (64, 128, 256)):
            for block in getattr(net, f'layer{stage}'):
                assert isinstance(block.bn1, IBN)
                assert block.bn1.IN.num_features == planes // 2
                assert block.bn1.BN.num_features == planes - planes // 2
        assert all(isinstance(b.bn1, torch.nn.BatchNorm2d) for b in net.layer4)

    @pytest.mark.parametrize('training', [False, True])
    def test_ibn_is_in_first(self, training):
        torch.manual_seed(0)
        ibn = IBN(64)
        ibn.IN.weight.data.normal_()
        ibn.IN.bias.data.normal_()
        ibn.BN.weight.data.normal_()
        ibn.BN.bias.data.normal_()
        ibn.BN.running_mean.normal_()
        ibn.BN.running_var.uniform_(0.5, 2.0)
        mean, var = ibn.BN.running_mean.clone(), ibn.BN.running_var.clone()
        ibn.train(training)
        x = torch.randn(4, 64, 6, 6) * 3 + 1
        out = ibn(x)
        ref_in = F.instance_norm(
            x[:, :32], weight=ibn.IN.weight, bias=ibn.IN.bias, eps=1e-5)
        ref_bn = F.batch_norm(x[:, 32:], mean, var, ibn.BN.weight,
                              ibn.BN.bias, training, 0.1, 1e-5)
        torch.testing.assert_close(
            out, torch.cat((ref_in, ref_bn), 1), rtol=1e-5, atol=1e-5)
        # per-instance statistics of the first half: its spatial means are
        # the IN bias for every sample
        torch.testing.assert_close(
            out[:, :32].mean((2, 3)),
            ibn.IN.bias.detach().expand(4, 32),
            rtol=0, atol=1e-5)

    def test_norm_eval_and_frozen_stages(self):
        net = MODELS.build(
            dict(type='ResNetIBN', depth=50, frozen_stages=1, norm_eval=True))
        net.train()
        ibn1, ibn2 = net.layer1[0].bn1, net.layer2[0].bn1
        assert not ibn1.IN.weight.requires_grad
        assert not ibn1.BN.weight.requires_grad
        assert ibn2.IN.weight.requires_grad and ibn2.BN.weight.requires_grad
        assert not ibn2.BN.training  # norm_eval reaches the BN part
        before = ibn2.BN.running_mean.clone()
        net(torch.rand(2, 3, 32, 32))
        torch.testing.assert_close(ibn2.BN.running_mean, before)

    def test_depth_101(self):
        net = MODELS.build(dict(type='ResNetIBN', depth=101))
        assert len(net.layer3) == 23
        assert all(isinstance(b.bn1, IBN) for b in net.layer3)

    @pytest.mark.parametrize('cfg,match', [
        (dict(depth=18), 'depth=18'),
        (dict(ibn_stages=(True, False)), 'ibn_stages'),
        (dict(deep_stem=True), 'deep_stem'),
    ])
    def test_bad_arguments(self, cfg, match):
        with pytest.raises(ValueError, match=match):
            MODELS.build(dict(type='ResNetIBN', **cfg))
