"""Pretrained face-recognition weights initialise a DMUE model: the trunk
and every branch copy equal the pretrained tensors, from the
plugin's own pretraining recipe and from the original MS-Celeb-1M format
(``tools/convert.py msceleb``)."""
import copy
import os.path as osp

import pytest
import torch
from conftest import CONFIGS
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import (get_state_dict, load_checkpoint,
                                        save_checkpoint, weights_to_cpu)
from mmpretrain.registry import MODELS

import dmue_mm  # noqa: F401  registers the plugin
from dmue_mm.converters import ConversionError, convert_msceleb
from .deploy_helpers import quiet_init
from .original_format import msceleb

K = 4
PRETRAIN_CFG = osp.join(CONFIGS, 'pretrain', 'faceres18_mvsoftmax_msceleb.py')
DMUE_MODEL_CFG = osp.join(CONFIGS, '_base_', 'models', 'dmue_faceres18.py')


def dmue_model(init_cfg=None):
    """The shipped face-R18 DMUE model with K classes (randomly
    initialised unless the backbone gets ``init_cfg``)."""
    cfg = Config.fromfile(DMUE_MODEL_CFG).model
    cfg.head.num_classes = K
    if init_cfg is not None:
        cfg.backbone.init_cfg = init_cfg
    model = MODELS.build(cfg)
    quiet_init(model)
    return model


def assert_trunk_and_branches(model, pretrained: dict) -> None:
    """``pretrained``: backbone key (MMPretrain names) -> tensor."""
    backbone = model.backbone.state_dict()
    assert set(backbone) == set(pretrained)
    for key, value in pretrained.items():
        assert torch.equal(backbone[key], value), key
    layer4 = {
        k[len('layer4.'):]: v
        for k, v in pretrained.items() if k.startswith('layer4.')
    }
    assert len(model.head.branches) == K
    for c, branch in enumerate(model.head.branches):
        state = branch['layer4'].state_dict()
        assert set(state) == set(layer4)
        for key, value in layer4.items():
            assert torch.equal(state[key], value), (c, key)


@pytest.fixture(scope='module')
def recipe_checkpoint(tmp_path_factory):
    """A checkpoint of the pretraining recipe, saved as the Runner does
    (with the message hub's history buffers)."""
    cfg = Config.fromfile(PRETRAIN_CFG)
    cfg.model.head.num_classes = 3
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    quiet_init(model)
    with torch.no_grad():  # as after training: non-default statistics
        for module in model.backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(std=0.1)
                module.running_var.uniform_(0.5, 1.5)
    hub = MessageHub.get_instance('pretrain_ckpt')
    hub.update_scalar('train/loss', 1.0)
    path = str(tmp_path_factory.mktemp('pretrain') / 'epoch_18.pth')
    save_checkpoint(
        dict(
            meta=dict(epoch=18, iter=10),
            state_dict=weights_to_cpu(get_state_dict(model)),
            message_hub=hub.state_dict()), path)
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    return path, backbone


class TestRecipeCheckpoint:

    def test_backbone_init_cfg_fills_trunk_and_every_branch(
            self, recipe_checkpoint):
        path, backbone = recipe_checkpoint
        model = dmue_model(
            dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
        assert_trunk_and_branches(model, backbone)


@pytest.fixture(scope='module')
def original_r18(tmp_path_factory):
    """An original ``mv_epoch_17.pt`` and its conversion with K."""
    folder = tmp_path_factory.mktemp('msceleb')
    raw = msceleb('r18', seed=2)
    src = str(folder / 'mv_epoch_17.pt')
    torch.save(raw, src)
    out = str(folder / 'faceres18_msceleb.pth')
    result = convert_msceleb(src, out, num_classes=K)
    pretrained = {
        k[len('feat_net.'):]: v
        for k, v in raw['state_dict'].items() if k.startswith('feat_net.')
    }
    return result, pretrained


class TestOriginalMSCeleb:

    def test_load_from_fills_trunk_and_every_branch(self, original_r18):
        result, pretrained = original_r18
        model = dmue_model()
        # what the Runner does with cfg.load_from (non-strict: the
        # classifiers, neck and MLP keep their initialisation)
        load_checkpoint(
            model,
            result.plugin_checkpoint,
            map_location='cpu',
            strict=False,
            logger='silent')
        assert_trunk_and_branches(model, pretrained)
        # the tools' checkpoint check accepts this documented partial file
        from dmue_mm.hooks import check_checkpoint_fits
        check_checkpoint_fits(
            model, torch.load(result.plugin_checkpoint, weights_only=True),
            result.plugin_checkpoint)

    def test_backbone_init_cfg_fills_trunk_and_every_branch(
            self, original_r18):
        result, pretrained = original_r18
        model = dmue_model(
            dict(
                type='Pretrained',
                checkpoint=result.plugin_checkpoint,
                prefix='backbone.'))
        assert_trunk_and_branches(model, pretrained)

    def test_converted_file_is_plain_and_drops_the_loss_layer(
            self, original_r18):
        result, _ = original_r18
        ckpt = torch.load(result.plugin_checkpoint, weights_only=True)
        keys = set(ckpt['state_dict'])
        assert not any('loss_layer' in k for k in keys)
        assert ckpt['meta']['dmue_mm']['epoch'] == 17
        assert sum(k.startswith('head.branches.') for k in keys) == K * sum(
            k.startswith('backbone.layer4.') for k in keys)

    def test_r50ibn_skips_the_unused_fc(self, tmp_path):
        raw = msceleb('r50ibn', seed=3)
        src = str(tmp_path / 'mv_epoch_17.pt')
        torch.save(raw, src)
        result = convert_msceleb(src, str(tmp_path / 'r50.pth'))
        state = torch.load(
            result.plugin_checkpoint, weights_only=True)['state_dict']
        assert 'backbone.layer1.0.bn1.IN.weight' in state
        assert not any('fc' in k for k in state)
        assert len(state) == len(raw['state_dict']) - 3  # fc.w, fc.b, loss

    def test_foreign_key_is_refused(self, tmp_path):
        raw = msceleb('r18')
        raw['state_dict'] = copy.copy(raw['state_dict'])
        raw['state_dict']['head.weight'] = torch.ones(1)
        src = str(tmp_path / 'bad.pt')
        torch.save(raw, src)
        with pytest.raises(ConversionError, match="unknown key 'head.weight'"):
            convert_msceleb(src, str(tmp_path / 'out.pth'), num_classes=K)
