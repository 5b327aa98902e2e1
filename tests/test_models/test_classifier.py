"""DMUEClassifier: branch initialisation, checkpoints, adapters, features."""
import pytest
import torch
from dmue_testing import (TINY_RESNET, one_thread, quiet_init,  # noqa: F401
                          samples, tiny_dmue)
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS

from dmue_mm.models.utils import ADAPTERS, ResNetAdapter, adapter_names


def branch_equals_stage(model, c):
    target = model.backbone.layer4.state_dict()
    branch = model.head.branches[c]['layer4'].state_dict()
    return all(torch.equal(target[k], branch[k]) for k in target)


class TestBranchInitialisation:

    def test_branches_are_copies_after_init(self):
        model = tiny_dmue(3)
        assert all(branch_equals_stage(model, c) for c in range(3))
        keys = [k for k in model.state_dict() if k.startswith('backbone.')]
        stock = MODELS.build(TINY_RESNET).state_dict()
        assert sorted(k[len('backbone.'):] for k in keys) == sorted(stock)

    def test_pretrained_backbone_initialises_every_branch(self, tmp_path):
        torch.manual_seed(5)
        source = MODELS.build(TINY_RESNET)
        path = str(tmp_path / 'backbone.pth')
        torch.save({'state_dict': source.state_dict()}, path)
        backbone = dict(TINY_RESNET,
                        init_cfg=dict(type='Pretrained', checkpoint=path))
        model = tiny_dmue(3, backbone=backbone)
        expected = source.layer4.state_dict()
        for c in range(3):
            got = model.head.branches[c]['layer4'].state_dict()
            assert all(torch.equal(expected[k], got[k]) for k in expected)
        assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)

    def test_load_from_full_checkpoint(self, tmp_path):
        torch.manual_seed(6)
        trained = tiny_dmue(3)
        with torch.no_grad():
            for p in trained.head.parameters():
                p.add_(torch.randn_like(p))
        path = str(tmp_path / 'dmue.pth')
        torch.save({'state_dict': trained.state_dict()}, path)
        fresh = tiny_dmue(3)
        load_checkpoint(fresh, path, strict=True, logger='silent')
        for (name, a), b in zip(trained.state_dict().items(),
                                fresh.state_dict().values()):
            assert torch.equal(a, b), name
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(trained.eval()(x), fresh.eval()(x))


class TestAdapters:

    def test_registered_names(self):
        assert {'resnet', 'mobilenet_v2', 'convnext', 'vit',
                'swin'} <= set(adapter_names())
        assert set(adapter_names()) == set(ADAPTERS.module_dict)

    def test_a_new_family_registers_its_adapter(self):
        from mmpretrain.models.backbones import ResNet

        @ADAPTERS.register_module('test_resnet_subclass', force=True)
        class Mine(ResNetAdapter):
            backbone_types = ()

        try:
            model = MODELS.build(
                dict(type='DMUEClassifier', backbone=TINY_RESNET,
                     head=dict(type='DMUEHead', num_classes=3),
                     adapter='test_resnet_subclass'))
            assert type(model.adapter) is Mine
            assert isinstance(model.backbone, ResNet)
        finally:
            ADAPTERS.module_dict.pop('test_resnet_subclass')

    def test_resnet_must_output_its_last_stage_only(self):
        backbone = dict(TINY_RESNET, out_indices=(2, 3))
        with pytest.raises(ValueError, match='out_indices=\\[2, 3\\]'):
            MODELS.build(
                dict(type='DMUEClassifier', backbone=backbone,
                     head=dict(type='DMUEHead', num_classes=3)))

    def test_explicit_adapter(self):
        model = MODELS.build(
            dict(type='DMUEClassifier', backbone=TINY_RESNET,
                 head=dict(type='DMUEHead', num_classes=3),
                 adapter='resnet'))
        assert type(model.adapter).__name__ == 'ResNetAdapter'

    def test_unknown_adapter(self):
        with pytest.raises(ValueError, match='unknown model.adapter'):
            MODELS.build(
                dict(type='DMUEClassifier', backbone=TINY_RESNET,
                     head=dict(type='DMUEHead', num_classes=3),
                     adapter='lenet'))

    def test_unknown_backbone(self):
        with pytest.raises(ValueError, match='no DMUE adapter knows'):
            MODELS.build(
                dict(type='DMUEClassifier',
                     backbone=dict(type='LeNet5', num_classes=0),
                     head=dict(type='DMUEHead', num_classes=3)))

    def test_in_channels_mismatch(self):
        with pytest.raises(ValueError, match='in_channels=100'):
            MODELS.build(
                dict(type='DMUEClassifier', backbone=TINY_RESNET,
                     head=dict(type='DMUEHead', num_classes=3,
                               in_channels=100)))

    def test_backbone_must_output_last_stage_only(self):
        backbone = dict(type='ConvNeXt', arch=dict(
            depths=[1, 1, 1, 1], channels=[8, 8, 16, 16]),
            out_indices=(2, 3))
        with pytest.raises(ValueError, match='last stage only'):
            MODELS.build(
                dict(type='DMUEClassifier', backbone=backbone,
                     head=dict(type='DMUEHead', num_classes=3)))

    def test_deploy_necks(self):
        model = tiny_dmue(3)
        assert model.adapter.deploy_neck == dict(type='GlobalAveragePooling')


class TestFeatures:

    def test_extract_feat_stages(self):
        model = tiny_dmue(3).eval()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            stock = model.extract_feat(x, stage='backbone')
            (f, ) = model.extract_feat(x, stage='neck')
            pre = model.extract_feat(x, stage='pre_logits')
            logits = model(x)
        torch.testing.assert_close(f, stock[-1].mean(dim=(2, 3)))
        torch.testing.assert_close(pre, model.head.bnneck(f))
        torch.testing.assert_close(logits, model.head.fc(pre))
        with pytest.raises(ValueError, match='stage'):
            model.extract_feat(x, stage='head')

    def test_no_hooks_on_the_backbone(self):
        model = tiny_dmue(3)
        model.loss(torch.randn(6, 3, 32, 32), samples([0, 1, 2] * 2))
        assert not any(m._forward_pre_hooks or m._forward_hooks
                       for m in model.modules())
