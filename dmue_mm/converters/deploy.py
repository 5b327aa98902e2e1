"""Deploy checkpoints and configs: a DMUE model as a stock MMPretrain
``ImageClassifier``.

The deploy config uses only stock MMPretrain types wherever the backbone
allows: ``ImageClassifier`` + the training backbone + the adapter's deploy
neck (e.g. ``GlobalAveragePooling``) + ``LinearClsHead`` with bias. A
backbone, transform, dataset or metric that only the plugin registers (e.g.
``FaceResNet``, ``ResNetIBN``, the LMDB datasets) adds
``custom_imports = dict(imports=['dmue_mm'])``.

Test data of the deploy config (``test_data``):

* ``'folder'`` (default): a stock dataset of the training config is kept;
  a plugin dataset (our LMDB) is replaced by MMPretrain's ``CustomDataset``
  over an image folder (``data_root/<class folder>/<image>``, or an
  ``ann_file`` with ``relpath label`` lines), with the training config's test
  pipeline (plus ``LoadImageFromFile``), data preprocessor and classes. Point
  it at the data with ``--cfg-options test_dataloader.dataset.data_root=DIR``.
* ``'plugin'``: the training config's test dataset and evaluator are kept as
  they are (e.g. the LMDB); the config then imports the plugin.

The deploy checkpoint is ``{'state_dict', 'meta'}`` with tensors and plain
Python values only, so stock MMEngine loads it with
``torch.load(weights_only=True)``.
"""
import copy
import os.path as osp
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import Registry
from mmpretrain.registry import DATASETS, METRICS, MODELS, TRANSFORMS

from dmue_mm.utils.fileio import write_text
from dmue_mm.version import __version__
from .checkpoint_io import check_state_dict, save_checkpoint, to_plain
from .errors import ConversionError
from .pruning import bnneck_eps, prune_state_dict

__all__ = [
    'TEST_DATA_MODES', 'DEFAULT_TEST_ROOT', 'ORIGINAL_DATA_PREPROCESSOR',
    'ORIGINAL_TEST_PIPELINE', 'DeploySpec', 'DeployFiles', 'DeployWriter',
    'build_dmue_model', 'load_dmue_state', 'resolve_classes',
    'build_deploy_config'
]

TEST_DATA_MODES = ('folder', 'plugin')
#: Where the deploy config's image-folder test set is expected by default.
DEFAULT_TEST_ROOT = 'data/deploy_test'
#: The original's normalisation: Normalize(0.5, 0.5) on [0, 1] RGB.
ORIGINAL_DATA_PREPROCESSOR = dict(
    type='ClsDataPreprocessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True)
#: The original's validation transform (``inference.py``): Resize((256, 256))
#: (PIL bilinear) -> CenterCrop(224).
ORIGINAL_TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(256, 256),
        keep_ratio=False,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
# A runtime that needs nothing but MMEngine/MMPretrain (MMPretrain's
# default_runtime without the training-only hooks).
_RUNTIME = dict(
    default_scope='mmpretrain',
    default_hooks=dict(
        timer=dict(type='IterTimerHook'),
        logger=dict(type='LoggerHook', interval=100),
        sampler_seed=dict(type='DistSamplerSeedHook'),
        visualization=dict(type='VisualizationHook', enable=False),
    ),
    env_cfg=dict(
        cudnn_benchmark=False,
        mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
        dist_cfg=dict(backend='nccl'),
    ),
    visualizer=dict(
        type='UniversalVisualizer',
        vis_backends=[dict(type='LocalVisBackend')]),
    log_level='INFO',
    load_from=None,
    resume=False,
    randomness=dict(seed=None, deterministic=False),
    test_cfg=dict(),
)
_STOCK_PACKAGES = ('mmpretrain', 'mmengine', 'mmcv')


def _owner_package(registry: Registry, type_name: Any) -> Optional[str]:
    """Top-level package that defines the registered ``type_name`` (None:
    unknown to the registry)."""
    cls = type_name if isinstance(type_name, type) else registry.get(type_name)
    return None if cls is None else cls.__module__.split('.')[0]


def _custom_package(registry: Registry,
                    cfg: Optional[Mapping]) -> Optional[str]:
    """The package a config item needs beyond the stock ones, if any."""
    if not cfg or 'type' not in cfg:
        return None
    owner = _owner_package(registry, cfg['type'])
    if owner is None:
        raise ConversionError(
            f"type {cfg['type']!r} is not registered in MMPretrain's "
            f'{registry.name} registry: import the package that defines it')
    return None if owner in _STOCK_PACKAGES else owner


def resolve_classes(classes: Optional[Sequence[str]],
                    num_classes: int) -> List[str]:
    """Class names for ``num_classes`` classes (``class_<i>`` where none or
    a wrong number are given)."""
    if classes is not None and len(classes) == num_classes:
        return [str(c) for c in classes]
    return [f'class_{i}' for i in range(num_classes)]


def build_dmue_model(model_cfg: Mapping) -> nn.Module:
    """Build a ``DMUEClassifier`` from its config, without pretrained
    initialisation (the weights come from a checkpoint).

    Args:
        model_cfg (Mapping): ``cfg.model`` of a DMUE config.

    Returns:
        nn.Module: The model, in eval mode.
    """
    cfg = copy.deepcopy(dict(model_cfg))
    if cfg.get('type') not in ('DMUEClassifier', 'mmpretrain.DMUEClassifier'):
        raise ConversionError(
            f"the config's model is {cfg.get('type')!r}, not a "
            'DMUEClassifier: pass the DMUE training config')
    for key in ('init_cfg', 'pretrained'):
        cfg.pop(key, None)
    cfg['backbone'] = _without_init(cfg['backbone'])
    cfg.pop('data_preprocessor', None)
    model = MODELS.build(cfg)
    model.eval()
    return model


def load_dmue_state(model: nn.Module,
                    state: Mapping[str, torch.Tensor],
                    what: str,
                    source_name=None) -> None:
    """Load ``state`` strictly into ``model`` after checking every key and
    shape (so a mismatch names the first offending key)."""
    check_state_dict(model.state_dict(), state, what, source_name)
    model.load_state_dict(state, strict=True)


def _without_init(backbone_cfg: Mapping) -> dict:
    cfg = copy.deepcopy(dict(backbone_cfg))
    cfg.pop('init_cfg', None)
    cfg.pop('pretrained', None)
    return cfg


@dataclass
class DeploySpec:
    """What the deploy model is made of.

    Attributes:
        backbone (dict): Backbone config (without pretrained init).
        neck (dict, optional): The adapter's deploy neck.
        num_classes (int): ``K``.
        feat_dim (int): ``D``.
        bnneck_eps (float): Epsilon of the folded BN-neck.
        data_preprocessor (dict, optional): The model's own data
            preprocessor config, if it has one.
    """
    backbone: dict
    neck: Optional[dict]
    num_classes: int
    feat_dim: int
    bnneck_eps: float = 1e-5
    data_preprocessor: Optional[dict] = None

    @classmethod
    def from_model(cls, model: nn.Module, model_cfg: Mapping) -> 'DeploySpec':
        """The spec of a built ``DMUEClassifier`` and its config."""
        return cls(
            backbone=_without_init(model_cfg['backbone']),
            neck=copy.deepcopy(model.adapter.deploy_neck),
            num_classes=model.head.num_classes,
            feat_dim=model.head.in_channels,
            bnneck_eps=bnneck_eps(model),
            data_preprocessor=copy.deepcopy(
                model_cfg.get('data_preprocessor')))

    def model_cfg(self) -> dict:
        """The stock ``ImageClassifier`` config: backbone + deploy neck +
        ``LinearClsHead`` with bias."""
        return dict(
            type='ImageClassifier',
            backbone=copy.deepcopy(self.backbone),
            neck=copy.deepcopy(self.neck),
            head=dict(
                type='LinearClsHead',
                num_classes=self.num_classes,
                in_channels=self.feat_dim,
                loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
                topk=(1, )))


def _test_loader(data_cfg: Optional[Mapping]) -> Optional[Mapping]:
    if not data_cfg:
        return None
    for field in ('test_dataloader', 'val_dataloader'):
        loader = data_cfg.get(field)
        if loader:
            return loader
    return None


def _data_preprocessor(spec: DeploySpec, data_cfg: Optional[Mapping]) -> dict:
    cfg = spec.data_preprocessor or (
        data_cfg or {}).get('data_preprocessor') or ORIGINAL_DATA_PREPROCESSOR
    cfg = copy.deepcopy(dict(cfg))
    cfg.pop('batch_augments', None)
    cfg['num_classes'] = spec.num_classes
    return cfg


def _with_loader(pipeline: Sequence[Mapping]) -> List[dict]:
    """The pipeline, starting with ``LoadImageFromFile`` (LMDB pipelines
    decode in the dataset and have none)."""
    pipeline = [copy.deepcopy(dict(t)) for t in pipeline]
    if not pipeline or 'LoadImage' not in str(pipeline[0].get('type')):
        pipeline.insert(0, dict(type='LoadImageFromFile'))
    return pipeline


def _stock_evaluator(evaluator: Any) -> List[dict]:
    items = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    kept = [
        copy.deepcopy(dict(m)) for m in items
        if m and _custom_package(METRICS, m) is None
    ]
    return kept or [dict(type='Accuracy', topk=(1, ))]


def _test_data(data_cfg: Optional[Mapping], classes: List[str], test_data: str,
               test_root: Optional[str]) -> Dict[str, Any]:
    """``test_dataloader`` and ``test_evaluator`` of the deploy config."""
    loader = _test_loader(data_cfg)
    dataset = dict(loader['dataset']) if loader else None
    evaluator = (data_cfg
                 or {}).get('test_evaluator') or (data_cfg
                                                  or {}).get('val_evaluator')
    if test_data == 'plugin' and dataset is not None:
        dataset = copy.deepcopy(dataset)
        metrics = copy.deepcopy(evaluator) if evaluator else dict(
            type='Accuracy', topk=(1, ))
    else:
        stock = dataset is not None and _custom_package(DATASETS,
                                                        dataset) is None
        pipeline = (dataset or {}).get('pipeline') or ORIGINAL_TEST_PIPELINE
        if stock:
            dataset = copy.deepcopy(dataset)
            dataset['pipeline'] = _with_loader(pipeline)
        else:
            dataset = dict(
                type='CustomDataset',
                data_root=DEFAULT_TEST_ROOT,
                classes=list(classes),
                pipeline=_with_loader(pipeline))
        if test_root is not None:
            dataset['data_root'] = test_root
        metrics = _stock_evaluator(evaluator)
    workers = int((loader or {}).get('num_workers', 2))
    dataloader = dict(
        batch_size=int((loader or {}).get('batch_size', 16)),
        num_workers=workers,
        persistent_workers=workers > 0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dataset)
    return dict(test_dataloader=dataloader, test_evaluator=metrics)


_HEADER = '''\
# Deploy config written by dmue_mm ({source}).
# A stock MMPretrain ImageClassifier: the DMUE target branch with the BN-neck
# folded into the LinearClsHead; no auxiliary branch, no uncertainty MLP.
# {plugin}
# Test data: test_dataloader.dataset ({dataset}).{folder_note}
# Use it with MMPretrain's ImageClassificationInferencer(config, checkpoint)
# or tools/test.py CONFIG CHECKPOINT.
'''
_FOLDER_NOTE = '''
# It reads an image folder: point it at yours with --cfg-options
#   test_dataloader.dataset.data_root=DIR
# where DIR/<class folder>/<image> and the SORTED folder names give the labels
# 0..K-1 in the order of `classes` (name them e.g. 0_<name>, 1_<name>, ...;
# 00_, 01_, ... for more than 10 classes), or set
#   test_dataloader.dataset.ann_file=LIST  (lines "relpath label").'''


def build_deploy_config(spec: DeploySpec,
                        data_cfg: Optional[Mapping] = None,
                        classes: Optional[Sequence[str]] = None,
                        test_data: str = 'folder',
                        test_root: Optional[str] = None) -> Config:
    """The deploy config of a DMUE model.

    Args:
        spec (DeploySpec): The deploy model.
        data_cfg (Mapping, optional): The training config, for the data
            preprocessor, test pipeline, dataset and evaluator. None: the
            original DMUE preprocessing (256 -> centre 224, mean = std =
            127.5) and an image folder.
        classes (Sequence[str], optional): Class names in label order.
        test_data (str): ``'folder'`` or ``'plugin'`` (see the module doc).
        test_root (str, optional): ``data_root`` of the test dataset.

    Returns:
        Config: The deploy config.
    """
    if test_data not in TEST_DATA_MODES:
        raise ConversionError(f'test_data must be one of {TEST_DATA_MODES}, '
                              f'got {test_data!r}')
    classes = resolve_classes(classes, spec.num_classes)
    model = spec.model_cfg()
    cfg = copy.deepcopy(_RUNTIME)
    cfg.update(
        model=model, data_preprocessor=_data_preprocessor(spec, data_cfg))
    cfg.update(_test_data(data_cfg, classes, test_data, test_root))
    dataset = cfg['test_dataloader']['dataset']
    metrics = cfg['test_evaluator']
    packages = {
        _custom_package(MODELS, model['backbone']),
        _custom_package(MODELS, model['neck']),
        _custom_package(DATASETS, dataset),
    }
    packages |= {
        _custom_package(TRANSFORMS, t)
        for t in dataset.get('pipeline', [])
    }
    packages |= {
        _custom_package(METRICS, m)
        for m in (metrics if isinstance(metrics, list) else [metrics])
    }
    packages.discard(None)
    if packages:
        cfg['custom_imports'] = dict(
            imports=sorted(packages), allow_failed_imports=False)
    return Config(cfg)


def _config_text(cfg: Config, source: str) -> str:
    plugin = ('Needs the plugin for: custom_imports = '
              f"{cfg.custom_imports['imports']}." if 'custom_imports' in cfg
              else 'Stock MMPretrain only: no plugin import.')
    dataset = cfg.test_dataloader.dataset
    folder = dataset.get('type') == 'CustomDataset'
    return _HEADER.format(
        source=source,
        plugin=plugin,
        dataset=dataset.get('type'),
        folder_note=_FOLDER_NOTE if folder else '') + cfg.pretty_text


@dataclass
class DeployFiles:
    """Paths written by :meth:`DeployWriter.write`."""
    config: str
    checkpoint: str


class DeployWriter:
    """Writes the deploy config and deploy checkpoints of one DMUE model.

    Args:
        spec (DeploySpec): The deploy model.
        data_cfg (Mapping, optional): The training config (see
            :func:`build_deploy_config`).
        classes (Sequence[str], optional): Class names in label order.
        test_data (str): ``'folder'`` or ``'plugin'``.
        test_root (str, optional): ``data_root`` of the test dataset.
        source (str): What the weights come from, for the config header and
            the checkpoint meta.
    """

    def __init__(self,
                 spec: DeploySpec,
                 data_cfg: Optional[Mapping] = None,
                 classes: Optional[Sequence[str]] = None,
                 test_data: str = 'folder',
                 test_root: Optional[str] = None,
                 source: str = 'a DMUE model'):
        self.spec = spec
        self.classes = resolve_classes(classes, spec.num_classes)
        self.config = build_deploy_config(spec, data_cfg, self.classes,
                                          test_data, test_root)
        self.source = source

    def checkpoint(self,
                   state: Mapping[str, torch.Tensor],
                   extra_meta: Optional[Mapping] = None) -> dict:
        """The deploy checkpoint of a DMUE state dict.

        Args:
            state (Mapping): ``DMUEClassifier`` state dict (the training
                parts are dropped, the BN-neck folded).
            extra_meta (Mapping, optional): Added to ``meta['dmue_mm']``.

        Returns:
            dict: ``{'state_dict', 'meta'}``, tensors and plain values.
        """
        pruned = prune_state_dict(state, self.spec.bnneck_eps)
        info = dict(
            format='deploy',
            version=__version__,
            source=self.source,
            num_classes=self.spec.num_classes,
            feat_dim=self.spec.feat_dim,
            bnneck_folded='head.bnneck.running_mean' in state)
        info.update(extra_meta or {})
        meta = dict(
            dataset_meta=dict(classes=list(self.classes)), dmue_mm=info)
        return dict(state_dict=pruned, meta=to_plain(meta))

    def write_config(self, path: str) -> str:
        """Write the deploy config (a Python config file) to ``path``."""
        return write_text(path, _config_text(self.config, self.source))

    def write(self,
              state: Mapping[str, torch.Tensor],
              out_dir: str,
              name: str,
              config_name: str = 'deploy.py',
              extra_meta: Optional[Mapping] = None) -> DeployFiles:
        """Write ``out_dir/<config_name>`` and ``out_dir/<name>.pth``.

        Args:
            state (Mapping): ``DMUEClassifier`` state dict.
            out_dir (str): Output folder (created).
            name (str): Checkpoint name without ``.pth``.
            config_name (str): File name of the config.
            extra_meta (Mapping, optional): See :meth:`checkpoint`.

        Returns:
            DeployFiles: The written paths.
        """
        ckpt = save_checkpoint(
            self.checkpoint(state, extra_meta),
            osp.join(out_dir, f'{name}.pth'))
        config = self.write_config(osp.join(out_dir, config_name))
        return DeployFiles(config=config, checkpoint=ckpt)
