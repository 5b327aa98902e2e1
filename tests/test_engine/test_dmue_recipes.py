"""The DMUE recipe configs follow the original's config.py and build."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmpretrain.registry import MODELS

import dmue_mm  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECIPES = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', 'dmue', '*.py'))
    if not p.endswith('_generated.py'))
# recipe -> (classes, ramp_a, backbone, bnneck)
EXPECTED = {
    'res18_affectnet': (8, 6, 'FaceResNet', True),
    'res18_affectnet7': (7, 6, 'FaceResNet', True),
    'res18_rafdb': (7, 10, 'FaceResNet', True),
    'res18_ferplus': (8, 12, 'FaceResNet', True),
    'r50ibn_affectnet': (8, 6, 'ResNetIBN', False),
    'r50ibn_affectnet7': (7, 6, 'ResNetIBN', False),
    'r50ibn_rafdb': (7, 10, 'ResNetIBN', False),
    'r50ibn_ferplus': (8, 12, 'ResNetIBN', False),
}


def test_every_recipe_is_checked():
    assert {osp.basename(p)[:-3] for p in RECIPES} == set(EXPECTED)


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe(path):
    cfg = Config.fromfile(path)
    classes, ramp_a, backbone, bnneck = EXPECTED[osp.basename(path)[:-3]]
    head = cfg.model.head
    assert (head.num_classes, head.ramp_a, head.bnneck) == (classes, ramp_a,
                                                            bnneck)
    assert cfg.data_preprocessor.num_classes == classes
    assert cfg.model.backbone.type == backbone
    assert (head.soft_weight, head.temperature, head.sp_weight,
            head.dropout) == (0.5, 1.2, 1000.0, 0.5)
    assert not head.released_code and not head.global_stats
    assert cfg.train_dataloader.batch_size == 72
    assert cfg.val_dataloader.batch_size == 16
    assert cfg.train_cfg.max_epochs == 36
    assert cfg.optim_wrapper.optimizer == dict(
        type='Adam', lr=1e-4, weight_decay=1e-4)
    assert cfg.optim_wrapper.paramwise_cfg.classifier_lr_mult == 10.0
    assert cfg.param_scheduler.type == 'GroupStepLR'
    crop = [t for t in cfg.train_pipeline if t.type == 'RandomCrop']
    assert crop and crop[0].crop_size == 224
    assert cfg.data_preprocessor.mean == [127.5] * 3


@pytest.mark.parametrize('name', ['res18_rafdb', 'r50ibn_affectnet'])
def test_recipe_model_builds(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'dmue', f'{name}.py'))
    model = MODELS.build(cfg.model)
    classes = EXPECTED[name][0]
    assert len(model.head.branches) == classes
    assert model.head.fc.weight.shape == (classes, model.head.in_channels)
    assert model.head.in_channels == (512 if name.startswith('res18') else
                                      2048)
