"""Small DMUE models and deploy-file loaders shared by the deploy tests."""
import copy
import os.path as osp

import torch
import torch.nn as nn
from conftest import CLASSES, CONFIGS
from dmue_testing import TINY_RESNET, quiet_init  # noqa: F401  re-exported
from mmengine.config import Config
from mmpretrain.registry import MODELS

import dmue_mm  # noqa: F401  registers the plugin
from dmue_mm.converters import DeploySpec, DeployWriter


def dmue_cfg(backbone: dict,
             bnneck: bool = True,
             num_classes: int = 3) -> dict:
    return dict(
        type='DMUEClassifier',
        backbone=copy.deepcopy(backbone),
        head=dict(type='DMUEHead', num_classes=num_classes, bnneck=bnneck))


def trained_like(cfg: dict, seed: int = 0) -> nn.Module:
    """A DMUE model with random BN-neck statistics and affine parameters
    and a non-trivial classifier, so that the fold is not an identity."""
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    quiet_init(model)
    with torch.no_grad():
        model.head.fc.weight.normal_(std=0.5)
        neck = model.head.bnneck
        if neck is not None:
            neck.running_mean.normal_(std=0.5)
            neck.running_var.uniform_(0.2, 3.0)
            neck.weight.uniform_(0.5, 2.0)
            neck.bias.normal_(std=0.5)
    return model.eval()


def deploy_model(config: str, checkpoint: str) -> nn.Module:
    """The stock model of a deploy config, with the deploy checkpoint
    loaded strictly through the safe unpickler."""
    cfg = Config.fromfile(config)
    model = MODELS.build(
        dict(cfg.model, data_preprocessor=cfg.get('data_preprocessor')))
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    model.load_state_dict(state['state_dict'], strict=True)
    model.eval()
    return model


def folder_deploy(out_dir: str, classes=CLASSES):
    """Deploy files of a tiny model on the generated-folder data config
    (mean = std = 127.5, RGB, no resize)."""
    cfg = dmue_cfg(TINY_RESNET, num_classes=len(classes))
    model = trained_like(cfg)
    data = Config.fromfile(
        osp.join(CONFIGS, '_base_', 'datasets', 'generated_folder.py'))
    writer = DeployWriter(
        DeploySpec.from_model(model, cfg), data_cfg=data, classes=classes)
    return writer.write(model.state_dict(), out_dir, 'm')


def lmdb_data_cfg(data_preprocessor: dict, pipeline: list, evaluator) -> dict:
    """The data part of a training config on our LMDB (a plugin dataset
    that a stock-only deploy config cannot read)."""
    return dict(
        data_preprocessor=data_preprocessor,
        test_dataloader=dict(
            batch_size=4,
            num_workers=0,
            dataset=dict(
                type='ExpressionLMDBDataset',
                data_root='data/x.lmdb',
                split='test',
                pipeline=pipeline)),
        test_evaluator=evaluator)
