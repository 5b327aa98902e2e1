"""The original DMUE checkpoint formats -> plugin checkpoints (the key
mapping is in docs/deploy.md).

Three formats come from the original code (JDAI-CV/FaceX-Zoo,
``addition_module/DMUE``), all read with ``torch.load(weights_only=True)``:

* **training snapshot** (``train.py``): a bare ``OrderedDict`` of the
  multi-branch model, keys ``module.``-prefixed (DataParallel) or not:
  ``base.*`` trunk, ``base.layer4_{b}.*`` for ``b = 0..K`` (``K`` = target),
  ``classifiers.{b}.weight`` ((K-1, D) auxiliary, (K, D) target),
  ``project_w.*``, and ``bottleneck.*`` when the BN-neck is on;
* **converted target-only weights** (``convert_weights.py``): ``base.*``
  with one ``base.layer4.*``, ``bottleneck.*`` and ``classifiers.0.weight``
  (K, D);
* **MS-Celeb-1M pretraining** (``pretrain/``): ``{'state_dict':
  {feat_net.*, loss_layer.weight, [feat_net.fc.*]}, 'epoch', 'batch_id'}``.

Branch and classifier indices are parsed with regular expressions, ``K`` is
inferred from the classifier shapes and checked against the number of
``layer4_*`` copies, and the result is loaded strictly into the plugin model
(``FaceResNet`` depth 18 = the original ResNet-18 face stem, or
``ResNetIBN`` depth 50 = ResNet-50-IBN-a).
"""
import copy
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from dmue_mm.models.utils import build_adapter
from dmue_mm.version import __version__
from .checkpoint_io import check_state_dict, strip_prefix, to_plain
from .deploy import DeploySpec, build_dmue_model, load_dmue_state
from .errors import ConversionError

__all__ = [
    'ORIGINAL_BACKBONES', 'ARCH_CHOICES', 'OriginalWeights', 'detect_arch',
    'original_model_cfg', 'parse_snapshot', 'parse_target', 'parse_msceleb',
    'plugin_checkpoint'
]

#: Plugin backbones of the two original architectures.
ORIGINAL_BACKBONES = {
    'faceres18': dict(type='FaceResNet', depth=18, out_indices=(3, )),
    'r50ibn': dict(type='ResNetIBN', depth=50, out_indices=(3, )),
}
ARCH_CHOICES = ('auto', ) + tuple(ORIGINAL_BACKBONES)

_LAYER4_COPY = re.compile(r'^base\.layer4_(\d+)\.(.+)$')
_TARGET_LAYER4 = re.compile(r'^base\.layer4\.(.+)$')
_CLASSIFIER = re.compile(r'^classifiers\.(\d+)\.weight$')
_PROJECT = re.compile(r'^project_w\.(\d+)\.(.+)$')
_NECK = re.compile(r'^bottleneck\.(.+)$')
_BASE = re.compile(r'^base\.(.+)$')
_FEAT_NET = re.compile(r'^feat_net\.(.+)$')
# pretraining keys the DMUE model does not use (the MV-Softmax weight and
# the unused fc of the original's load_param)
_PRETRAIN_SKIP = re.compile(r'^(loss_layer\.|feat_net\.fc\.)')


@dataclass
class OriginalWeights:
    """An original checkpoint mapped onto plugin key names.

    Attributes:
        arch (str): ``'faceres18'`` or ``'r50ibn'``.
        num_classes (int): ``K`` (0 when unknown: backbone-only weights).
        bnneck (bool): Whether the file has the BN-neck.
        state (OrderedDict): Plugin key -> tensor, in the file's order.
        names (dict): Plugin key -> key in the file (for messages).
        info (dict): Plain values about the source (epoch, ...).
    """
    arch: str
    num_classes: int
    bnneck: bool
    state: 'OrderedDict[str, torch.Tensor]'
    names: Dict[str, str]
    info: dict = field(default_factory=dict)

    def source_name(self, key: str) -> str:
        """The file's key of a plugin key."""
        return self.names.get(key, key)


def detect_arch(base_keys, what: str) -> str:
    """``'r50ibn'`` (Bottleneck blocks) or ``'faceres18'`` (BasicBlocks)
    from the trunk keys (without their ``base.``/``feat_net.`` prefix)."""
    keys = set(base_keys)
    if 'layer1.0.conv3.weight' in keys:
        return 'r50ibn'
    if 'layer1.0.conv2.weight' in keys:
        return 'faceres18'
    raise ConversionError(
        f'{what}: cannot tell the architecture (no layer1.0.conv2/conv3 '
        'weight in the trunk): pass --arch faceres18 or --arch r50ibn')


def original_model_cfg(arch: str, num_classes: int, bnneck: bool) -> dict:
    """The plugin ``DMUEClassifier`` config of an original model."""
    return dict(
        type='DMUEClassifier',
        backbone=copy.deepcopy(ORIGINAL_BACKBONES[arch]),
        head=dict(type='DMUEHead', num_classes=num_classes, bnneck=bnneck))


def _tensor_dict(raw, what: str, fmt: str) -> 'OrderedDict':
    if not isinstance(raw, Mapping) or not raw:
        raise ConversionError(
            f'{what}: expected a dict of tensors ({fmt}), got '
            f'{type(raw).__name__}')
    if 'state_dict' in raw:
        raise ConversionError(
            f"{what}: a {{'state_dict': ...}} checkpoint, not {fmt}: an "
            "MS-Celeb-1M pretraining file is converted with 'msceleb', a "
            "plugin training checkpoint with 'deploy'")
    state = strip_prefix(raw)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f'{what}: key {key!r} holds a '
                                  f'{type(value).__name__}, not a tensor')
    return state


def _raw_names(raw: Mapping) -> Dict[str, str]:
    """Stripped key -> key as written in the file."""
    return {
        (k[len('module.'):] if k.startswith('module.') else k): k
        for k in raw
    }


def _check_arch(arch: str, detected: str) -> str:
    if arch == 'auto':
        return detected
    if arch not in ORIGINAL_BACKBONES:
        raise ConversionError(f'arch must be one of {ARCH_CHOICES}, got '
                              f'{arch!r}')
    return arch


def _indices(found: Dict[int, object], expected: int, what: str,
             pattern: str) -> None:
    if sorted(found) != list(range(expected)):
        raise ConversionError(
            f'{what}: expected {pattern} indices 0..{expected - 1}, found '
            f'{sorted(found)}')


def parse_snapshot(raw: Mapping,
                   what: str = 'snapshot',
                   arch: str = 'auto') -> OriginalWeights:
    """Map an original multi-branch training snapshot onto the plugin's
    ``DMUEClassifier`` keys.

    Args:
        raw (Mapping): The loaded file (bare ``OrderedDict``).
        what (str): Name of the file, for messages.
        arch (str): ``'auto'``, ``'faceres18'`` or ``'r50ibn'``.

    Returns:
        OriginalWeights: The mapped weights (``K`` inferred and checked).

    Raises:
        ConversionError: Unknown keys, non-contiguous branch indices, or a
            classifier shape that contradicts ``K``.
    """
    fmt = 'an original DMUE training snapshot'
    state = _tensor_dict(raw, what, fmt)
    raw_names = _raw_names(raw)
    copies: Dict[int, list] = {}
    classifiers: Dict[int, Tuple[str, torch.Tensor]] = {}
    trunk, others = [], []
    for key, value in state.items():
        if _TARGET_LAYER4.match(key):
            raise ConversionError(
                f"{what}: key {raw_names[key]!r} has a single layer4: these "
                "are converted target-only weights, use the 'target' "
                'subcommand')
        copy_match = _LAYER4_COPY.match(key)
        classifier = _CLASSIFIER.match(key)
        if copy_match:
            copies.setdefault(int(copy_match.group(1)), []).append(
                (key, copy_match.group(2), value))
        elif classifier:
            classifiers[int(classifier.group(1))] = (key, value)
        elif _BASE.match(key):
            trunk.append((key, _BASE.match(key).group(1), value))
        elif _PROJECT.match(key) or _NECK.match(key):
            others.append((key, value))
        else:
            raise ConversionError(
                f'{what}: unknown key {raw_names[key]!r}: not a key of '
                f'{fmt} (docs/deploy.md lists the key patterns)')
    if len(classifiers) < 3:
        raise ConversionError(
            f'{what}: found {len(classifiers)} classifiers.* weights; a '
            'DMUE snapshot has K + 1 >= 3 (K auxiliary + the target)')
    _indices(classifiers, len(classifiers), what, 'classifiers.*')
    num_classes = len(classifiers) - 1
    target_key, target = classifiers[num_classes]
    if target.dim() != 2 or target.shape[0] != num_classes:
        raise ConversionError(
            f'{what}: {len(classifiers)} classifiers give K = {num_classes}, '
            f'so the target classifier {raw_names[target_key]!r} must be '
            f'(K, D) = ({num_classes}, D), got {tuple(target.shape)}')
    dim = target.shape[1]
    for c in range(num_classes):
        key, weight = classifiers[c]
        if tuple(weight.shape) != (num_classes - 1, dim):
            raise ConversionError(
                f'{what}: auxiliary classifier {raw_names[key]!r} must be '
                f'(K-1, D) = ({num_classes - 1}, {dim}), got '
                f'{tuple(weight.shape)}')
    _indices(copies, num_classes + 1, what, 'base.layer4_*')
    chosen = _check_arch(arch, detect_arch((r for _, r, _ in trunk), what))

    mapped: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    names: Dict[str, str] = {}

    def put(new: str, old: str, value: torch.Tensor) -> None:
        mapped[new] = value
        names[new] = raw_names[old]

    for key, rest, value in trunk:
        put(f'backbone.{rest}', key, value)
    for index in sorted(copies):
        prefix = ('backbone.layer4'
                  if index == num_classes else f'head.branches.{index}.layer4')
        for key, rest, value in copies[index]:
            put(f'{prefix}.{rest}', key, value)
    for index in sorted(classifiers):
        key, value = classifiers[index]
        put(
            'head.fc.weight' if index == num_classes else
            f'head.aux_fcs.{index}.weight', key, value)
    for key, value in others:
        project = _PROJECT.match(key)
        new = (f'head.uncertainty_mlp.{project.group(1)}.{project.group(2)}'
               if project else f'head.bnneck.{_NECK.match(key).group(1)}')
        put(new, key, value)
    return OriginalWeights(chosen, num_classes, 'bottleneck.weight' in state,
                           mapped, names)


def parse_target(raw: Mapping,
                 what: str = 'target weights',
                 arch: str = 'auto') -> OriginalWeights:
    """Map the original converted target-only weights (written by its
    ``convert_weights.py``) onto plugin keys (``backbone.*``,
    ``head.bnneck.*``, ``head.fc.weight``).

    Args:
        raw (Mapping): The loaded file (bare ``OrderedDict``).
        what (str): Name of the file, for messages.
        arch (str): ``'auto'``, ``'faceres18'`` or ``'r50ibn'``.

    Returns:
        OriginalWeights: The mapped weights.
    """
    fmt = 'converted target-only DMUE weights'
    state = _tensor_dict(raw, what, fmt)
    raw_names = _raw_names(raw)
    mapped: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    names: Dict[str, str] = {}
    for key, value in state.items():
        if _LAYER4_COPY.match(key) or (_CLASSIFIER.match(key)
                                       and key != 'classifiers.0.weight'):
            raise ConversionError(
                f'{what}: key {raw_names[key]!r} belongs to a multi-branch '
                "training snapshot: use the 'snapshot' subcommand")
        if key == 'classifiers.0.weight':
            new = 'head.fc.weight'
        elif _NECK.match(key):
            new = f'head.bnneck.{_NECK.match(key).group(1)}'
        elif _BASE.match(key):
            new = f'backbone.{_BASE.match(key).group(1)}'
        else:
            raise ConversionError(
                f'{what}: unknown key {raw_names[key]!r}: not a key of {fmt} '
                '(base.*, bottleneck.*, classifiers.0.weight)')
        mapped[new] = value
        names[new] = raw_names[key]
    if 'head.fc.weight' not in mapped or mapped['head.fc.weight'].dim() != 2:
        raise ConversionError(f'{what}: no (K, D) classifiers.0.weight: not '
                              f'{fmt}')
    trunk = (k[len('backbone.'):] for k in mapped if k.startswith('backbone.'))
    chosen = _check_arch(arch, detect_arch(trunk, what))
    return OriginalWeights(chosen, mapped['head.fc.weight'].shape[0],
                           'head.bnneck.weight' in mapped, mapped, names)


def parse_msceleb(raw: Mapping,
                  what: str = 'pretraining checkpoint',
                  arch: str = 'auto') -> OriginalWeights:
    """Map an original MS-Celeb-1M pretraining checkpoint onto the plugin
    backbone (``backbone.*``); ``loss_layer.*`` and ``feat_net.fc.*`` are
    dropped, as the original's ``load_param`` does.

    Args:
        raw (Mapping): The loaded file (``{'state_dict', 'epoch',
            'batch_id'}``; a bare state dict is accepted too).
        what (str): Name of the file, for messages.
        arch (str): ``'auto'``, ``'faceres18'`` or ``'r50ibn'``.

    Returns:
        OriginalWeights: Backbone weights (``num_classes`` 0).
    """
    if not isinstance(raw, Mapping):
        raise ConversionError(f'{what}: expected a dict, got '
                              f'{type(raw).__name__}')
    state = raw.get('state_dict', raw)
    info = {k: raw[k] for k in ('epoch', 'batch_id') if k in raw}
    raw_names = _raw_names(state)
    mapped: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    names: Dict[str, str] = {}
    for key, value in strip_prefix(state).items():
        if _PRETRAIN_SKIP.match(key):
            continue
        match = _FEAT_NET.match(key)
        if not match or not isinstance(value, torch.Tensor):
            raise ConversionError(
                f'{what}: unknown key {raw_names[key]!r}: an MS-Celeb-1M '
                'pretraining checkpoint has feat_net.* and loss_layer.* '
                'tensors only')
        mapped[f'backbone.{match.group(1)}'] = value
        names[f'backbone.{match.group(1)}'] = raw_names[key]
    if not mapped:
        raise ConversionError(f'{what}: no feat_net.* tensor found')
    trunk = (k[len('backbone.'):] for k in mapped)
    chosen = _check_arch(arch, detect_arch(trunk, what))
    return OriginalWeights(chosen, 0, False, mapped, names, to_plain(info))


def _meta(weights: OriginalWeights,
          source: str,
          fmt: str,
          classes=None) -> dict:
    info = dict(
        format=fmt,
        version=__version__,
        source=source,
        arch=weights.arch,
        num_classes=weights.num_classes,
        bnneck=weights.bnneck,
        **weights.info)
    meta = dict(dmue_mm=info)
    if classes is not None:
        meta['dataset_meta'] = dict(classes=list(classes))
    return to_plain(meta)


def plugin_checkpoint(
        weights: OriginalWeights,
        source: str,
        classes=None,
        num_classes: Optional[int] = None
) -> Tuple[dict, Optional[DeploySpec]]:
    """A plugin checkpoint (``{'state_dict', 'meta'}``, ``load_from``-able)
    from mapped original weights, checked strictly against the plugin model.

    * snapshot weights: the whole ``DMUEClassifier`` (resume / fine-tune);
    * target-only weights: ``backbone.*`` + ``head.fc.weight`` (+ neck), the
      deploy model's parts;
    * pretraining weights: ``backbone.*`` and, with ``num_classes``, the
      same last stage copied into every auxiliary branch
      ``head.branches.{c}.*`` (so both ``load_from`` and a backbone
      ``init_cfg`` with ``prefix='backbone.'`` give identical branches).

    Args:
        weights (OriginalWeights): From one of the ``parse_*`` functions.
        source (str): The file, for messages and the meta.
        classes (Sequence[str], optional): Class names for the meta.
        num_classes (int, optional): ``K`` for pretraining weights.

    Returns:
        tuple: The checkpoint and the :class:`DeploySpec` of its model
        (None for pretraining weights, which have no classifier).
    """
    what = f'{source} ({weights.arch})'
    if weights.num_classes == 0:  # pretraining: backbone only
        return _pretrain_checkpoint(weights, source, what, num_classes)
    cfg = original_model_cfg(weights.arch, weights.num_classes, weights.bnneck)
    if any(k.startswith('head.branches.') for k in weights.state):
        model = build_dmue_model(cfg)
        load_dmue_state(model, weights.state, what, weights.source_name)
        spec = DeploySpec.from_model(model, cfg)
        fmt = 'plugin'
    else:
        spec = _check_target(weights, cfg, what)
        fmt = 'plugin-target'
    return (dict(
        state_dict=weights.state, meta=_meta(weights, source, fmt,
                                             classes)), spec)


def _backbone(arch: str) -> nn.Module:
    backbone = MODELS.build(copy.deepcopy(ORIGINAL_BACKBONES[arch]))
    backbone.eval()  # MMPretrain's ResNet.train returns None: no chaining
    return backbone


def _check_target(weights: OriginalWeights, cfg: dict,
                  what: str) -> DeploySpec:
    """Check target-only weights against the backbone, the BN-neck and the
    (K, D) classifier; return the deploy spec."""
    backbone = _backbone(weights.arch)
    adapter = build_adapter(None, backbone)
    dim = adapter.feat_dim
    expected = OrderedDict(
        (f'backbone.{k}', v) for k, v in backbone.state_dict().items())
    if weights.bnneck:
        expected.update((f'head.bnneck.{k}', v)
                        for k, v in nn.BatchNorm1d(dim).state_dict().items())
    expected['head.fc.weight'] = torch.empty(weights.num_classes, dim)
    check_state_dict(expected, weights.state, what, weights.source_name)
    return DeploySpec(
        backbone=copy.deepcopy(cfg['backbone']),
        neck=copy.deepcopy(adapter.deploy_neck),
        num_classes=weights.num_classes,
        feat_dim=dim)


def _pretrain_checkpoint(weights: OriginalWeights, source: str, what: str,
                         num_classes: Optional[int]) -> Tuple[dict, None]:
    backbone = _backbone(weights.arch)
    expected = OrderedDict(
        (f'backbone.{k}', v) for k, v in backbone.state_dict().items())
    check_state_dict(expected, weights.state, what, weights.source_name)
    adapter = build_adapter(None, backbone)
    state = OrderedDict(weights.state)
    if num_classes:
        stage = [f'backbone.{p}.' for p in adapter.stage_paths()]
        keys = adapter.stage_keys
        for c in range(num_classes):
            for key, value in weights.state.items():
                for path, name in zip(stage, keys):
                    if key.startswith(path):
                        rest = key[len(path):]
                        state[f'head.branches.{c}.{name}.{rest}'] = value
        weights = OriginalWeights(weights.arch, num_classes, False, state,
                                  weights.names, weights.info)
    return dict(
        state_dict=state, meta=_meta(weights, source, 'plugin-init')), None
