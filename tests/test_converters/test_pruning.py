"""Branch pruning: the stock deploy model equals the DMUE target branch."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from dmue_testing import sum_atol
from mmengine.config import Config

from dmue_mm.converters import (ConversionError, DeploySpec, DeployWriter,
                                build_deploy_config, fold_bnneck,
                                prune_state_dict)
from .deploy_helpers import (TINY_RESNET, deploy_model, dmue_cfg,
                             lmdb_data_cfg, trained_like)

pytestmark = pytest.mark.numeric

K = 3
BACKBONES = {
    'resnet': (TINY_RESNET, 32),
    'face_resnet': (dict(
        type='FaceResNet',
        depth=18,
        base_channels=8,
        stem_channels=8,
        out_indices=(3, )), 32),
    'mobilenet_v2': (dict(type='MobileNetV2', widen_factor=0.25), 32),
    'convnext': (dict(
        type='ConvNeXt',
        arch=dict(depths=[1, 1, 1, 1], channels=[8, 16, 24, 32])), 32),
    'vit': (dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=32,
        patch_size=8), 32),
    'swin': (dict(
        type='SwinTransformer',
        arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2]),
        img_size=64,
        window_size=2), 64),
}
LMDB_DATA = lmdb_data_cfg(
    dict(num_classes=K, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    [dict(type='CenterCrop', crop_size=28),
     dict(type='PackInputs')],
    [dict(type='Accuracy', topk=(1, )),
     dict(type='ExpressionMetric')])


class TestFold:

    @pytest.mark.parametrize('affine', [True, False])
    def test_fold_equals_bn_then_linear(self, affine):
        torch.manual_seed(0)
        bn = nn.BatchNorm1d(16, affine=affine, eps=1e-3).eval()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 4.0)
        if affine:
            with torch.no_grad():
                bn.weight.uniform_(0.5, 2)
                bn.bias.normal_()
        w = torch.randn(5, 16)
        x = torch.randn(7, 16)
        folded_w, b = fold_bnneck(w, bn.running_mean, bn.running_var, bn.eps,
                                  bn.weight, bn.bias)
        expected = F.linear(bn(x), w)
        # two 16-term float32 sums in another order: the linear's, and the
        # fold's (one rounding per weight, the bias a 16-term sum)
        torch.testing.assert_close(
            F.linear(x, folded_w, b),
            expected,
            rtol=0,
            atol=sum_atol(expected, 16, layers=2))

    def test_unknown_key_is_refused(self):
        with pytest.raises(ConversionError, match="unexpected key 'neck.w'"):
            prune_state_dict({
                'head.fc.weight': torch.ones(2, 3),
                'neck.w': torch.ones(1)
            })

    def test_without_neck_the_bias_is_zero(self):
        out = prune_state_dict({
            'head.fc.weight': torch.ones(2, 3),
            'head.aux_fcs.0.weight': torch.ones(1, 3)
        })
        assert set(out) == {'head.fc.weight', 'head.fc.bias'}
        assert torch.equal(out['head.fc.bias'], torch.zeros(2))


class TestDeployEqualsTargetBranch:

    @pytest.mark.parametrize('name,bnneck',
                             [(n, True)
                              for n in BACKBONES] + [('resnet', False)])
    def test_logits_and_argmax(self, name, bnneck, tmp_path):
        backbone, size = BACKBONES[name]
        cfg = dmue_cfg(backbone, bnneck)
        model = trained_like(cfg)
        files = DeployWriter(DeploySpec.from_model(model, cfg)).write(
            model.state_dict(), str(tmp_path), 'm')
        deploy = deploy_model(files.config, files.checkpoint)
        x = torch.randn(6, 3, size, size)
        with torch.no_grad():
            expected = model(x, mode='tensor')
            logits = deploy(x, mode='tensor')
        # the trunks run the same kernels on the same input (bitwise equal,
        # checked: 0 without BN-neck); only the folded classifier sums its
        # D features in another order. Measured <= 6.2e-6 (D = 1280).
        atol = sum_atol(expected, deploy.head.fc.in_features)
        assert (logits - expected).abs().max().item() <= atol
        assert torch.equal(logits.argmax(1), expected.argmax(1))
        assert len(deploy.state_dict()) < len(model.state_dict())
        assert not any('branches' in k or 'uncertainty' in k
                       for k in deploy.state_dict())
        cfg = Config.fromfile(files.config)
        assert ('custom_imports' in cfg) == (name == 'face_resnet')


class TestDeployConfig:

    @pytest.fixture(scope='class')
    def spec(self):
        cfg = dmue_cfg(TINY_RESNET)
        return DeploySpec.from_model(trained_like(cfg), cfg)

    def test_lmdb_data_becomes_a_stock_image_folder(self, spec):
        cfg = build_deploy_config(spec, LMDB_DATA, classes=['a', 'b', 'c'])
        dataset = cfg.test_dataloader.dataset
        assert dataset.type == 'CustomDataset'
        assert dataset.classes == ['a', 'b', 'c']
        assert [t['type'] for t in dataset.pipeline
                ] == ['LoadImageFromFile', 'CenterCrop', 'PackInputs']
        assert [m['type'] for m in cfg.test_evaluator] == ['Accuracy']
        assert cfg.data_preprocessor.mean == [127.5] * 3
        assert cfg.model.neck == dict(type='GlobalAveragePooling')
        assert cfg.model.head.num_classes == K
        assert 'custom_imports' not in cfg  # stock ResNet, stock data

    def test_plugin_mode_keeps_the_lmdb(self, spec):
        cfg = build_deploy_config(spec, LMDB_DATA, test_data='plugin')
        assert cfg.test_dataloader.dataset.type == 'ExpressionLMDBDataset'
        assert cfg.custom_imports.imports == ['dmue_mm']
        assert cfg.test_dataloader.persistent_workers is False

    def test_checkpoint_holds_plain_values_only(self, spec, tmp_path):
        model = trained_like(dmue_cfg(TINY_RESNET))
        files = DeployWriter(
            spec, classes=['a', 'b', 'c']).write(
                model.state_dict(),
                str(tmp_path),
                'm',
                extra_meta=dict(epoch=3))
        ckpt = torch.load(files.checkpoint, weights_only=True)
        assert set(ckpt) == {'state_dict', 'meta'}
        assert ckpt['meta']['dataset_meta'] == {'classes': ['a', 'b', 'c']}
        assert ckpt['meta']['dmue_mm']['epoch'] == 3
        assert ckpt['meta']['dmue_mm']['bnneck_folded'] is True
        keys = set(ckpt['state_dict'])
        assert {'head.fc.weight', 'head.fc.bias'} <= keys
        assert all(k.startswith(('backbone.', 'head.fc.')) for k in keys)
