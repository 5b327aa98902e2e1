"""File-level conversions behind ``tools/convert.py``.

Each function reads one checkpoint, converts it and writes the results;
they return what they wrote so that the tool (or a script) can report it.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence

from mmengine.config import Config

from dmue_mm.compat import load_local_checkpoint
from .checkpoint_io import load_foreign, save_checkpoint, strip_prefix
from .deploy import (DeployFiles, DeploySpec, DeployWriter, build_dmue_model,
                     load_dmue_state)
from .errors import ConversionError
from .original import (OriginalWeights, parse_msceleb, parse_snapshot,
                       parse_target, plugin_checkpoint)

__all__ = [
    'ConversionResult', 'original_classes', 'convert_snapshot',
    'convert_target', 'convert_msceleb', 'convert_plugin'
]


@dataclass
class ConversionResult:
    """What a conversion wrote.

    Attributes:
        summary (str): One line about the source (architecture, K, ...).
        plugin_checkpoint (str, optional): The plugin checkpoint.
        deploy (DeployFiles, optional): The deploy config and checkpoint.
        notes (list[str]): Hints for the user (how to use the files).
    """
    summary: str
    plugin_checkpoint: Optional[str] = None
    deploy: Optional[DeployFiles] = None
    notes: List[str] = field(default_factory=list)


def original_classes(classes: Optional[Sequence[str]],
                     num_classes: int) -> Optional[List[str]]:
    """Class names of an original model: as given, else AffectNet-8's order
    for K = 8 (the only label order in the original code); None
    (generic names) otherwise."""
    if classes is not None:
        if len(classes) != num_classes:
            raise ConversionError(
                f'--classes has {len(classes)} names but the checkpoint has '
                f'K = {num_classes} classes')
        return list(classes)
    if num_classes == 8:
        from dmue_mm.datasets import AFFECTNET8_CLASSES
        return list(AFFECTNET8_CLASSES)
    return None


def _summary(weights: OriginalWeights, fmt: str) -> str:
    neck = 'with' if weights.bnneck else 'without'
    classes = f', K = {weights.num_classes}' if weights.num_classes else ''
    return (f'{fmt}: {weights.arch}{classes}, {neck} BN-neck, '
            f'{len(weights.state)} tensors')


def _write_original_deploy(weights: OriginalWeights, spec: DeploySpec,
                           src: str, deploy_dir: str,
                           classes: Optional[List[str]], test_data: str,
                           test_root: Optional[str]) -> DeployFiles:
    writer = DeployWriter(
        spec,
        data_cfg=None,
        classes=classes,
        test_data=test_data,
        test_root=test_root,
        source=f'original {osp.basename(src)}')
    name = osp.splitext(osp.basename(src))[0]
    return writer.write(
        weights.state, deploy_dir, name, config_name=f'{name}_deploy.py')


def convert_snapshot(src: str,
                     out: Optional[str] = None,
                     deploy_dir: Optional[str] = None,
                     arch: str = 'auto',
                     classes: Optional[Sequence[str]] = None,
                     test_data: str = 'folder',
                     test_root: Optional[str] = None) -> ConversionResult:
    """Original multi-branch training snapshot -> plugin checkpoint and/or
    deploy config + checkpoint.

    Args:
        src (str): The snapshot (``ep*_acc*.pth``).
        out (str, optional): Plugin checkpoint to write (``load_from`` of a
            DMUE config, to resume or fine-tune).
        deploy_dir (str, optional): Folder for the deploy files.
        arch (str): ``'auto'``, ``'faceres18'`` or ``'r50ibn'``.
        classes (Sequence[str], optional): Class names in label order.
        test_data (str): Deploy config test data (``'folder'``).
        test_root (str, optional): Its ``data_root``.

    Returns:
        ConversionResult: The written files.
    """
    if out is None and deploy_dir is None:
        raise ConversionError('nothing to write: give -o/--out (plugin '
                              'checkpoint) and/or --deploy-dir')
    weights = parse_snapshot(load_foreign(src), src, arch)
    classes = original_classes(classes, weights.num_classes)
    ckpt, spec = plugin_checkpoint(weights, src, classes)
    result = ConversionResult(_summary(weights, 'training snapshot'))
    if out is not None:
        result.plugin_checkpoint = save_checkpoint(ckpt, out)
        result.notes.append(
            'resume or fine-tune: tools/train.py CONFIG --cfg-options '
            f'load_from={out} model.head.num_classes={weights.num_classes} '
            f'(a config with the {spec.backbone["type"]} backbone'
            f'{"" if weights.bnneck else " and model.head.bnneck=False"})')
    if deploy_dir is not None:
        result.deploy = _write_original_deploy(weights, spec, src, deploy_dir,
                                               classes, test_data, test_root)
    return result


def convert_target(src: str,
                   deploy_dir: str,
                   arch: str = 'auto',
                   classes: Optional[Sequence[str]] = None,
                   test_data: str = 'folder',
                   test_root: Optional[str] = None) -> ConversionResult:
    """Original converted target-only weights -> deploy config +
    checkpoint (arguments as :func:`convert_snapshot`)."""
    weights = parse_target(load_foreign(src), src, arch)
    classes = original_classes(classes, weights.num_classes)
    _, spec = plugin_checkpoint(weights, src, classes)
    result = ConversionResult(_summary(weights, 'target-only weights'))
    result.deploy = _write_original_deploy(weights, spec, src, deploy_dir,
                                           classes, test_data, test_root)
    return result


def convert_msceleb(src: str,
                    out: str,
                    num_classes: Optional[int] = None,
                    arch: str = 'auto') -> ConversionResult:
    """Original MS-Celeb-1M pretraining checkpoint -> plugin initial
    weights: ``backbone.*``, and with ``num_classes`` every auxiliary branch
    ``head.branches.{c}.*`` filled from the same ``feat_net.layer4.*``.

    Args:
        src (str): ``mv_epoch_*.pt``.
        out (str): The plugin checkpoint to write.
        num_classes (int, optional): ``K`` of the DMUE model.
        arch (str): ``'auto'``, ``'faceres18'`` or ``'r50ibn'``.

    Returns:
        ConversionResult: The written file.
    """
    if num_classes is not None and num_classes < 2:
        raise ConversionError(f'--num-classes must be >= 2, got '
                              f'{num_classes}')
    weights = parse_msceleb(load_foreign(src), src, arch)
    ckpt, _ = plugin_checkpoint(weights, src, num_classes=num_classes)
    result = ConversionResult(_summary(weights, 'MS-Celeb-1M pretraining'))
    result.plugin_checkpoint = save_checkpoint(ckpt, out)
    result.notes.append(
        "initialise a DMUE config: model.backbone.init_cfg=dict(type="
        f"'Pretrained', checkpoint='{out}', prefix='backbone.') (the "
        'classifier copies the last stage into every branch)' +
        (f', or load_from={out} (trunk and all {num_classes} branches)'
         if num_classes else ''))
    return result


def _plugin_config(ckpt: Mapping[str, Any], config: Optional[str],
                   src: str) -> Config:
    if config is not None:
        if not osp.isfile(config):
            raise ConversionError(f'config {config!r} not found: check the '
                                  'path')
        return Config.fromfile(config)
    text = ckpt.get('meta', {}).get('cfg') if isinstance(ckpt, Mapping) \
        else None
    if not text:
        raise ConversionError(
            f'{src} stores no config (meta.cfg): pass the training config '
            'with --config')
    return Config.fromstring(text, '.py')


def convert_plugin(src: str,
                   deploy_dir: str,
                   config: Optional[str] = None,
                   classes: Optional[Sequence[str]] = None,
                   test_data: str = 'folder',
                   test_root: Optional[str] = None,
                   name: Optional[str] = None) -> ConversionResult:
    """A plugin DMUE checkpoint (from a training run) -> deploy config +
    checkpoint: what :class:`~dmue_mm.hooks.BranchPruningHook` writes.

    The file is the user's own run, so it is unpickled fully (MMEngine's
    checkpoints hold message-hub objects).

    Args:
        src (str): ``epoch_*.pth`` / ``best_*.pth`` of a DMUE run.
        deploy_dir (str): Output folder.
        config (str, optional): The training config; defaults to the one
            stored in the checkpoint's meta.
        classes (Sequence[str], optional): Class names; default: the
            checkpoint's ``dataset_meta``.
        test_data (str): ``'folder'`` or ``'plugin'``.
        test_root (str, optional): ``data_root`` of the deploy test set.
        name (str, optional): Checkpoint name (default: ``src``'s name).

    Returns:
        ConversionResult: The written files.
    """
    ckpt = load_local_checkpoint(src, map_location='cpu')
    state = strip_prefix(ckpt.get('state_dict', ckpt))
    cfg = _plugin_config(ckpt, config, src)
    model = build_dmue_model(cfg.model)
    load_dmue_state(model, state, f'{src} (model of the config)')
    if classes is None:
        classes = ckpt.get('meta', {}).get('dataset_meta', {}).get('classes')
    writer = DeployWriter(
        DeploySpec.from_model(model, cfg.model),
        data_cfg=cfg,
        classes=classes,
        test_data=test_data,
        test_root=test_root,
        source=osp.basename(src))
    name = name or osp.splitext(osp.basename(src))[0]
    head = model.head
    result = ConversionResult(
        f'plugin checkpoint: {type(model.backbone).__name__}, K = '
        f'{head.num_classes}, '
        f'{"with" if head.bnneck is not None else "without"} BN-neck')
    result.deploy = writer.write(state, deploy_dir, name)
    return result
