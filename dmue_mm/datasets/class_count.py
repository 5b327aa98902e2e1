"""The class count of a dataset config, from the config or the data's own
metadata, without building the dataset or reading an image; and the check
that the model's head has as many classes.

A head with more (or fewer) outputs than the data has classes trains
without an error (the DMUE head even builds one auxiliary branch per
configured class) or crashes at the first step, so the tools compare the
counts before any work.
"""
import os.path as osp
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

from mmengine.fileio import list_from_file

from mmpretrain.registry import DATASETS

from dmue_mm.utils.errors import DataError
from .lmdb_dataset import ExpressionLMDBDataset
from .lmdb_io import read_lmdb_metadata
from .original_lmdb import (OriginalLMDBDataset, original_classes,
                            parse_original_list)

__all__ = [
    'dataset_class_counts', 'head_num_classes', 'check_head_classes',
    'check_class_names'
]

#: (number of classes, where it comes from)
Count = Tuple[int, str]


def _dataset_type(dataset_cfg: Mapping) -> Optional[type]:
    name = dataset_cfg.get('type')
    if isinstance(name, type):
        return name
    if not isinstance(name, str):
        return None
    return DATASETS.get(name)


def _configured(dataset_cfg: Mapping, cls: Optional[type]) -> Optional[Count]:
    """The classes the config gives, in MMPretrain's order of precedence:
    ``metainfo.classes``, ``classes`` (names or a file of names), the type's
    ``METAINFO``."""
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return len(metainfo['classes']), '`metainfo.classes` in the config'
    classes = dataset_cfg.get('classes')
    if isinstance(classes, str) and osp.isfile(osp.expanduser(classes)):
        names = list_from_file(osp.expanduser(classes))
        return len(names), f'the `classes` file {classes!r}'
    if isinstance(classes, (list, tuple)):
        return len(classes), '`classes` in the config'
    fixed = getattr(cls, 'METAINFO', {}).get('classes') if cls else None
    if fixed is not None:
        return len(fixed), f'the classes of {cls.__name__}'
    return None


def _from_data(dataset_cfg: Mapping, cls: Optional[type]) -> Optional[Count]:
    """The class count stored with the data: LMDB metadata, an original
    list file, or the class folders of an image folder."""
    if cls is None:
        return None
    root = dataset_cfg.get('data_root') or ''
    root = osp.expanduser(root) if isinstance(root, str) else ''
    if issubclass(cls, ExpressionLMDBDataset):
        if not osp.exists(root):
            return None  # the dataset reports the missing LMDB
        meta = read_lmdb_metadata(root)
        return meta['num_classes'], f'the metadata of LMDB {root!r}'
    if issubclass(cls, OriginalLMDBDataset):
        ann_file = dataset_cfg.get('ann_file') or ''
        if not osp.isfile(ann_file) or dataset_cfg.get('classes'):
            return None
        _, count = original_classes(parse_original_list(ann_file), None,
                                    ann_file)
        return count, f'the labels of list file {ann_file!r}'
    from mmpretrain.datasets import CustomDataset
    from mmpretrain.datasets.custom import find_folders
    if issubclass(cls, CustomDataset) and not dataset_cfg.get('ann_file'):
        prefix = dataset_cfg.get('data_prefix') or ''
        if isinstance(prefix, Mapping):
            prefix = prefix.get('img_path', '')
        folder = osp.join(root, prefix)
        if not osp.isdir(folder):
            return None
        folders, _ = find_folders(folder)
        return len(folders), f'the class folders of {folder!r}'
    return None


def dataset_class_counts(dataset_cfg: Mapping) -> List[Count]:
    """Every class count a dataset config determines.

    Args:
        dataset_cfg (Mapping): A dataset config (``type``, ``data_root``,
            ``classes``, ...). Wrappers with a ``dataset`` key are followed.

    Returns:
        list[tuple[int, str]]: (count, source) from the config (its
        ``classes``/``metainfo`` or the dataset type's fixed classes) and
        from the data's metadata; empty when neither says.
    """
    while 'dataset' in dataset_cfg and 'data_root' not in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']  # ClassBalancedDataset, ...
    cls = _dataset_type(dataset_cfg)
    return [
        count for count in (_configured(dataset_cfg, cls),
                            _from_data(dataset_cfg, cls))
        if count is not None
    ]


def head_num_classes(model_cfg: Mapping) -> Optional[int]:
    """``model.head.num_classes`` (also inside a TTA wrapper's
    ``module``)."""
    while 'head' not in model_cfg and 'module' in model_cfg:
        model_cfg = model_cfg['module']
    head = model_cfg.get('head') or {}
    return head.get('num_classes')


def check_head_classes(
        cfg: Mapping,
        fields: Iterable[str] = ('train_dataloader', 'val_dataloader',
                                 'test_dataloader')
) -> None:
    """Check ``model.head.num_classes`` against every dataloader's dataset.

    Args:
        cfg (Mapping): The full config, after ``--cfg-options``.
        fields (Iterable[str]): The dataloaders to check (those the run
            uses).

    Raises:
        DataError: Naming both counts, the source of the dataset's and the
            key to set.
    """
    num_classes = head_num_classes(cfg.get('model') or {})
    if num_classes is None:
        return
    for field in fields:
        loader = cfg.get(field)
        if not loader or not loader.get('dataset'):
            continue
        for count, source in dataset_class_counts(loader['dataset']):
            if count != num_classes:
                raise DataError(
                    f'model.head.num_classes is {num_classes} but '
                    f'{field}.dataset has {count} classes ({source}): set '
                    f'model.head.num_classes={count} (and '
                    'data_preprocessor.num_classes), or the dataset\'s '
                    '`classes`, so that they agree')


def check_class_names(num_classes: int, names: Optional[Sequence[str]],
                      source: str) -> None:
    """Check class names (``--classes``, a checkpoint's
    ``dataset_meta``) against a model's class count.

    Raises:
        DataError: Naming both counts and ``source``.
    """
    if names is not None and len(names) != num_classes:
        raise DataError(
            f'the model has {num_classes} classes but {source} names '
            f'{len(names)} ({", ".join(map(str, names))}): give '
            f'{num_classes} class names (--classes a,b,...)')
