"""MMPretrain datasets whose images live in an LMDB.

Images are decoded by the dataset itself (BGR uint8, as MMCV's
``LoadImageFromFile`` gives), right before the pipeline, so pipelines start
without a loading transform (and stock MMPretrain's inferencer accepts the
test pipeline as it is), while :meth:`get_data_info` stays cheap:
``get_gt_labels()`` and the samplers never decode an image.
"""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from dmue_mm.utils.errors import DataError
from .lmdb_io import LMDBReader, decode_image, image_key, read_lmdb_metadata

__all__ = ['LMDBImageDataset', 'ExpressionLMDBDataset']


class LMDBImageDataset(BaseDataset):
    """Base of the datasets that read their images from an LMDB.

    ``data_root`` is the LMDB itself (a folder with ``data.mdb``). Each
    process (DataLoader worker, DDP rank) opens its own read-only
    environment on first access; see :class:`~.lmdb_io.LMDBReader`.

    Args:
        data_root (str): The LMDB folder (or file).
        split (str): The split to read, e.g. ``'train'`` or ``'test'``.
        ann_file (str): An annotation file, if the format needs one. It is
            *not* joined with ``data_root`` (which is the LMDB).
        classes (Sequence[str], optional): Expected class names, checked
            against the dataset's own. Defaults to the class attribute
            ``METAINFO`` or, if it has none, the dataset's classes.
        **kwargs: Other arguments of MMPretrain's ``BaseDataset``
            (``pipeline``, ``test_mode``, ``indices``, ``lazy_init``...).
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 ann_file: str = '',
                 classes: Optional[Sequence[str]] = None,
                 **kwargs):
        self.split = split
        self.lmdb_path = osp.expanduser(data_root)
        self.reader = LMDBReader(self.lmdb_path)
        super().__init__(
            ann_file=ann_file, data_root=data_root, classes=classes, **kwargs)

    def _join_prefix(self) -> None:
        """Keep paths as given: ``data_root`` is the LMDB, not a folder that
        other paths live in."""

    def decode(self, buf: bytes, data_info: Dict[str, Any]) -> np.ndarray:
        """Decode a stored value to a BGR uint8 image."""
        return decode_image(buf, f'{self.lmdb_path}::{data_info["img_path"]}')

    def prepare_data(self, idx: int) -> Any:
        """Read and decode image ``idx``, then run the pipeline on it."""
        data_info = self.get_data_info(idx)
        img = self.decode(self.reader.get(data_info['lmdb_key']), data_info)
        data_info.update(
            img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
        return self.pipeline(data_info)

    def set_classes(self, available: Optional[Sequence[str]], num_classes: int,
                    source: str) -> None:
        """Check the configured classes against the dataset's, or adopt them.

        Args:
            available (Sequence[str], optional): The dataset's class names
                in label order; None if its classes have no names.
            num_classes (int): The dataset's number of classes.
            source (str): The file to name in errors.

        Raises:
            DataError: If the configured classes disagree.
        """
        configured = self._metainfo.get('classes')
        if configured is None:
            names = available or [str(i) for i in range(num_classes)]
            self._metainfo['classes'] = tuple(names)
            return
        configured = tuple(configured)
        if available is not None and tuple(available) != configured:
            how = ('the same names in another order' if sorted(available)
                   == sorted(configured) else 'different names')
            raise DataError(
                f'the classes {list(configured)} of the config differ from '
                f'{list(available)} in {source} ({how}): set the dataset\'s '
                '`classes` to the order of the data (label i is class i), '
                'or re-pack the data with the intended classes')
        if len(configured) != num_classes:
            raise DataError(
                f'the config gives {len(configured)} classes but {source} has '
                f'{num_classes}: fix the dataset\'s `classes`')

    def make_data_info(self, split: str, key: str, label: int,
                       lmdb_key: bytes) -> Dict[str, Any]:
        """One sample's data info, before images are decoded."""
        return dict(
            img_path=f'{split}/{key}', lmdb_key=lmdb_key, gt_label=int(label))

    def extra_repr(self) -> List[str]:
        """Extra lines of ``repr``: the LMDB and the split."""
        return [f'LMDB: \t{self.lmdb_path}', f'Split: \t{self.split}']


@DATASETS.register_module()
class ExpressionLMDBDataset(LMDBImageDataset):
    """A split of an LMDB written by ``tools/pack_lmdb.py``
    (:class:`~.lmdb_io.LMDBWriter`).

    Classes come from the LMDB metadata; classes given in the config (or by
    a subclass's ``METAINFO``) must equal them, in order. Classes without
    names (e.g. thousands of identities) are named ``'0'``, ``'1'``, ...

    Args:
        data_root (str): The LMDB folder.
        split (str): Split to read (see the metadata; the packers write
            ``train`` and ``test``, and ``val`` for FERPlus).
        classes (Sequence[str], optional): Expected classes.
        score_extra (str, optional): Name of a per-sample extra holding
            class votes or scores (e.g. ``'votes'`` of FERPlus); it is
            normalised to sum 1 and given as ``gt_score`` (float32), which
            ``PackInputs`` packs. Note that MMPretrain's ``ClsHead`` trains
            on ``gt_score`` (soft labels) instead of ``gt_label`` when it is
            present.
        **kwargs: Other arguments of MMPretrain's ``BaseDataset``.

    Example:
        >>> ds = ExpressionLMDBDataset('data/rafdb/rafdb.lmdb', split='test')
        >>> ds[0]['inputs'].shape  # with pipeline=[dict(type='PackInputs')]
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 classes: Optional[Sequence[str]] = None,
                 score_extra: Optional[str] = None,
                 **kwargs):
        self.score_extra = score_extra
        super().__init__(
            data_root=data_root, split=split, classes=classes, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the metadata entry and list the split's samples."""
        meta = read_lmdb_metadata(self.lmdb_path)
        self.set_classes(meta['classes'], meta['num_classes'],
                         f'LMDB {self.lmdb_path!r}')
        self._metainfo.setdefault('image_format', meta['image_format'])
        splits = meta['splits']
        if self.split not in splits:
            raise DataError(
                f'LMDB {self.lmdb_path!r} has no split '
                f'{self.split!r}; its splits are {sorted(splits)}: '
                'fix the dataset\'s `split`')
        info = splits[self.split]
        labels = np.asarray(info['labels'], dtype=np.int64)
        outside = (labels < 0) | (labels >= meta['num_classes'])
        if outside.any():
            index = int(np.argmax(outside))
            raise DataError(
                f'LMDB {self.lmdb_path!r}: label {labels[index]} of '
                f'{self.split}/{info["keys"][index]} is outside the '
                f'{meta["num_classes"]} classes; re-pack it')
        scores = self._scores(info, meta['num_classes'])
        data_list = []
        for index, (key,
                    label) in enumerate(zip(info['keys'], info['labels'])):
            data_info = self.make_data_info(self.split, key, label,
                                            image_key(self.split, key))
            if scores is not None:
                data_info['gt_score'] = scores[index]
            data_list.append(data_info)
        return data_list

    def _scores(self, info: Dict[str, Any],
                num_classes: int) -> Optional[np.ndarray]:
        if self.score_extra is None:
            return None
        values = info['extras'].get(self.score_extra)
        if values is None or any(v is None for v in values):
            raise DataError(
                f'LMDB {self.lmdb_path!r} split {self.split!r} does not store '
                f'{self.score_extra!r} for every sample: pack it with the '
                'tool that records them (e.g. tools/pack_lmdb.py ferplus), or '
                'set score_extra=None')
        scores = np.asarray(values, dtype=np.float32)
        totals = scores.sum(axis=1, keepdims=True) if scores.ndim == 2 else 0
        if scores.shape != (len(values), num_classes) or np.any(totals <= 0):
            raise DataError(
                f'LMDB {self.lmdb_path!r}: {self.score_extra!r} must hold '
                f'{num_classes} non-negative values with a positive sum per '
                f'sample, got an array of shape {scores.shape}; re-pack it')
        return scores / totals
