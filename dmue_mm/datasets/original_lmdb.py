"""The original DMUE data format, read as it is.

The original code (``preprocess/make_lmdb.py``, ``datasets/bases.py``)
keeps labels in a list file, one line ``<split>_<relpath> <label>`` per
image, and the images in an LMDB whose
keys are those first tokens (``b'train_<relpath>'``) and whose values are
raw 256x256x3 RGB bytes, without header or metadata. Its parser takes the
label as the second-to-last character of the line and splits the key on
every ``_``; here a line is split on its last run of white space (paths may
contain ``_`` and spaces, labels may have several digits) and the key on its
first ``_``.
"""
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mmpretrain.registry import DATASETS

from dmue_mm.utils.errors import DataError
from .label_files import read_label_lines
from .lmdb_dataset import LMDBImageDataset
from .lmdb_io import ImageDecodeError

__all__ = [
    'OriginalEntry', 'parse_original_list', 'check_original_labels',
    'original_classes', 'raw_rgb', 'decode_raw', 'OriginalLMDBDataset'
]


class OriginalEntry(NamedTuple):
    """One line of an original list file."""
    split: str
    relpath: str
    label: int
    key: str
    line: int


def parse_original_list(path: str) -> List[OriginalEntry]:
    """Parse an original DMUE list file.

    Args:
        path (str): The list file (``lb2.txt`` of the original code).

    Returns:
        list[OriginalEntry]: Every entry, in file order.

    Raises:
        DataError: Missing file, or a malformed line (naming file and line).
    """
    expected = '<split>_<path> <label>'
    entries = []
    for line in read_label_lines(path, expected):
        split, sep, relpath = line.name.partition('_')
        if not (split and sep and relpath):
            raise DataError(f'{path}:{line.line}: expected "{expected}", got '
                            f'the key {line.name!r} without a "<split>_" '
                            'prefix; fix the line')
        entries.append(
            OriginalEntry(split, relpath, line.label, line.name, line.line))
    return entries


def check_original_labels(entries: Sequence[OriginalEntry], num_classes: int,
                          path: str) -> None:
    """Raise a :class:`DataError` naming the first label outside
    ``[0, num_classes)``."""
    for entry in entries:
        if not 0 <= entry.label < num_classes:
            raise DataError(
                f'{path}:{entry.line}: label {entry.label} of {entry.key!r} '
                f'is outside the {num_classes} classes (0-{num_classes - 1}): '
                'fix the list file or the classes')


def original_classes(entries: Sequence[OriginalEntry],
                     classes: Optional[Sequence[str]],
                     path: str) -> Tuple[Optional[Tuple[str, ...]], int]:
    """The class names and count of an original list.

    Without names, the count is the largest label + 1 over the whole file.
    """
    if classes is not None:
        num_classes = len(classes)
    else:
        num_classes = max((e.label for e in entries), default=-1) + 1
    check_original_labels(entries, num_classes, path)
    return (None if classes is None else tuple(classes)), num_classes


@DATASETS.register_module()
class OriginalLMDBDataset(LMDBImageDataset):
    """A split of an original DMUE LMDB with its list file.

    Args:
        data_root (str): The original LMDB folder.
        ann_file (str): The original list file.
        split (str): The key prefix to read (``'train'`` or ``'test'``).
        classes (Sequence[str], optional): Class names in label order. If
            not given, the classes are named ``'0'``..``'K-1'`` with K the
            largest label in the list file + 1.
        image_shape (tuple): Shape of the raw values, (H, W, 3) RGB.
        **kwargs: Other arguments of MMPretrain's ``BaseDataset``.
    """

    def __init__(self,
                 data_root: str,
                 ann_file: str,
                 split: str = 'train',
                 classes: Optional[Sequence[str]] = None,
                 image_shape: Tuple[int, int, int] = (256, 256, 3),
                 **kwargs):
        self.image_shape = tuple(image_shape)
        super().__init__(
            data_root=data_root,
            split=split,
            ann_file=ann_file,
            classes=classes,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Parse the list file and keep the lines of ``split``."""
        entries = parse_original_list(self.ann_file)
        names, num_classes = original_classes(entries,
                                              self._metainfo.get('classes'),
                                              self.ann_file)
        self.set_classes(names, num_classes, f'list file {self.ann_file!r}')
        data_list = [
            self.make_data_info(e.split, e.relpath, e.label, e.key.encode())
            for e in entries if e.split == self.split
        ]
        if not data_list:
            splits = sorted({e.split for e in entries})
            raise DataError(f'list file {self.ann_file!r} has no line for '
                            f'split {self.split!r} (its splits: {splits}): '
                            'fix the dataset\'s `split`')
        return data_list

    def decode(self, buf: bytes, data_info: Dict[str, Any]) -> np.ndarray:
        """Raw RGB bytes to a BGR image of ``image_shape``."""
        return decode_raw(buf, self.image_shape,
                          f'{self.lmdb_path}::{data_info["lmdb_key"]!r}')


def raw_rgb(buf: bytes, shape: Tuple[int, int, int],
            source: str) -> np.ndarray:
    """View raw HWC RGB bytes of the original format as an array.

    Raises:
        ImageDecodeError: If the value does not have the expected size.
    """
    expected = int(np.prod(shape))
    if len(buf) != expected:
        raise ImageDecodeError(
            f'{source}: {len(buf)} bytes, but a raw {shape} RGB image has '
            f'{expected}; set image_shape to the stored shape, or re-create '
            'the LMDB')
    return np.frombuffer(buf, np.uint8).reshape(shape)


def decode_raw(buf: bytes, shape: Tuple[int, int, int],
               source: str) -> np.ndarray:
    """Raw HWC RGB bytes of the original format to a BGR uint8 array."""
    return np.ascontiguousarray(raw_rgb(buf, shape, source)[..., ::-1])
