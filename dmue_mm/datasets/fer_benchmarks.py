"""The facial-expression benchmarks, each with its canonical class order.

Each class is an :class:`~.lmdb_dataset.ExpressionLMDBDataset` whose
``METAINFO`` fixes the classes, so an LMDB packed with another class order
is refused with a clear error. The orders are those of the official
releases (``docs/datasets.md`` lists them with their sources).
"""
from typing import Optional, Sequence

from mmpretrain.registry import DATASETS

from dmue_mm.utils.errors import DataError
from .lmdb_dataset import ExpressionLMDBDataset

__all__ = [
    'RAFDB_CLASSES', 'AFFECTNET7_CLASSES', 'AFFECTNET8_CLASSES',
    'FERPLUS_CLASSES', 'FERPLUS_OTHER_VOTES', 'SFEW_CLASSES',
    'BenchmarkDataset', 'RAFDB',
    'AffectNet7', 'AffectNet8', 'FERPlus', 'SFEW'
]

# RAF-DB basic, list_patition_label.txt labels 1..7 map to 0..6 in this order.
RAFDB_CLASSES = ('Surprise', 'Fear', 'Disgust', 'Happiness', 'Sadness',
                 'Anger', 'Neutral')
# AffectNet expression codes 0..7 (the order of the DMUE code, issue #94).
AFFECTNET8_CLASSES = ('Neutral', 'Happiness', 'Sadness', 'Surprise', 'Fear',
                      'Disgust', 'Anger', 'Contempt')
AFFECTNET7_CLASSES = AFFECTNET8_CLASSES[:7]
# fer2013new.csv vote columns, in file order.
FERPLUS_CLASSES = ('Neutral', 'Happiness', 'Surprise', 'Sadness', 'Anger',
                   'Disgust', 'Fear', 'Contempt')
FERPLUS_OTHER_VOTES = ('unknown', 'NF')
# SFEW 2.0 class folders (alphabetical).
SFEW_CLASSES = ('Angry', 'Disgust', 'Fear', 'Happy', 'Neutral', 'Sad',
                'Surprise')


class BenchmarkDataset(ExpressionLMDBDataset):
    """A benchmark whose class count is fixed by its ``METAINFO``.

    A ``classes`` list of another length is refused at once: the benchmark
    has that many classes, whatever the names (another class set is an
    ``ExpressionLMDBDataset`` with its own ``classes``).

    Args:
        data_root (str): The LMDB folder.
        classes (Sequence[str], optional): Expected classes, of the
            benchmark's length.
        **kwargs: See :class:`~.lmdb_dataset.ExpressionLMDBDataset`.
    """

    def __init__(self,
                 data_root: str,
                 classes: Optional[Sequence[str]] = None,
                 **kwargs):
        fixed = self.METAINFO['classes']
        if isinstance(classes, (list, tuple)) and len(classes) != len(fixed):
            raise DataError(
                f'{type(self).__name__} has {len(fixed)} classes '
                f'({", ".join(fixed)}) but the config\'s `classes` lists '
                f'{len(classes)}: drop `classes`, or use '
                "type='ExpressionLMDBDataset' for another class set")
        super().__init__(data_root=data_root, classes=classes, **kwargs)


@DATASETS.register_module()
class RAFDB(BenchmarkDataset):
    """RAF-DB basic (7 classes; splits ``train``, ``test``)."""
    METAINFO = dict(classes=RAFDB_CLASSES)


@DATASETS.register_module()
class AffectNet7(BenchmarkDataset):
    """AffectNet, manually annotated, 7 classes (no Contempt; splits
    ``train`` and ``test`` = the official validation set)."""
    METAINFO = dict(classes=AFFECTNET7_CLASSES)


@DATASETS.register_module()
class AffectNet8(BenchmarkDataset):
    """AffectNet, manually annotated, 8 classes (splits ``train`` and
    ``test`` = the official validation set)."""
    METAINFO = dict(classes=AFFECTNET8_CLASSES)


@DATASETS.register_module()
class FERPlus(BenchmarkDataset):
    """FERPlus (8 classes; splits ``train`` = Training, ``val`` =
    PublicTest, ``test`` = PrivateTest).

    Labels are the majority votes; by default each sample also carries
    ``gt_score``, its 8-way vote distribution (float32, sums to 1), for
    metrics that score predicted distributions.

    Args:
        score_extra (str, optional): ``'votes'`` (default) to give
            ``gt_score``; None for hard labels only (MMPretrain's ``ClsHead``
            trains on ``gt_score`` whenever it is present).
        **kwargs: See :class:`BenchmarkDataset`.
    """
    METAINFO = dict(classes=FERPLUS_CLASSES)

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 classes: Optional[Sequence[str]] = None,
                 score_extra: Optional[str] = 'votes',
                 **kwargs):
        super().__init__(
            data_root=data_root,
            split=split,
            classes=classes,
            score_extra=score_extra,
            **kwargs)


@DATASETS.register_module()
class SFEW(BenchmarkDataset):
    """SFEW 2.0 (7 classes; splits ``train`` and ``test`` = the official
    Val set)."""
    METAINFO = dict(classes=SFEW_CLASSES)
