"""Inputs of the alignment tool: folder trees, list files and the official
RAF-DB / AffectNet layouts (parsed by the packers of
:mod:`dmue_mm.datasets.packers`, ``docs/datasets.md``), as lists of
:class:`Record`.

Every source gives the image path, the relative path it keeps in the
output, its label and split when known, the class names, and the entries it
leaves out with the reason (e.g. AffectNet's "None"/"Uncertain"/"No-Face"
labels), which the tool writes to its report: nothing is dropped silently.
"""
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple

from mmengine.utils import scandir

from dmue_mm.datasets import Layout, affectnet_layout, rafdb_layout
from dmue_mm.utils.errors import DataError

from .imageio import IMAGE_EXTENSIONS

__all__ = [
    'Record', 'Source', 'FOLDER_LAYOUTS', 'list_folder', 'list_file',
    'from_layout', 'list_rafdb', 'list_affectnet'
]

FOLDER_LAYOUTS = ('flat', 'class', 'split/class')


class Record(NamedTuple):
    """One input image.

    Attributes:
        path (str): The image file.
        relpath (str): Its path relative to the input root, kept in the
            output (``/`` separated).
        label (int, optional): Class index.
        split (str): Split name (``train``, ``test``, ...).
    """
    path: str
    relpath: str
    label: Optional[int]
    split: str


@dataclass
class Source:
    """The records of an input and what was left out.

    Attributes:
        records (list[Record]): Images to align, in input order.
        classes (list[str], optional): Class names in label order, if known.
        num_classes (int): Number of classes (0 when unlabelled).
        skipped (list[tuple]): ``(path, reason)`` of entries left out (one
            row may stand for several, see ``skipped_count``).
        skipped_count (int, optional): Number of entries left out (default:
            one per row of ``skipped``).
    """
    records: List[Record]
    classes: Optional[List[str]] = None
    num_classes: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    skipped_count: Optional[int] = None

    def __post_init__(self):
        if self.skipped_count is None:
            self.skipped_count = len(self.skipped)


def _walk_order(relpath: str) -> list:
    """Sort key of top-down walk order: a folder's files (by name) before
    its sub-folders (by name)."""
    *folders, name = relpath.split('/')
    return [(1, f) for f in folders] + [(0, name)]


def _require_dir(path: str, what: str) -> None:
    if not osp.isdir(path):
        raise DataError(f'{what} {path!r} is not a folder: check the path')


def list_folder(root: str,
                layout: str = 'flat',
                split: str = 'train') -> Source:
    """Every image under ``root``, recursively, in sorted order.

    Args:
        root (str): The input folder.
        layout (str): ``'flat'`` (no labels), ``'class'``
            (``<class>/.../<image>``, labels from the sorted class folder
            names) or ``'split/class'`` (``<split>/<class>/.../<image>``, as
            SFEW's ``Train/<Class>/*.png``).
        split (str): Split of every image, unless the layout names splits.

    Returns:
        Source: The records.
    """
    if layout not in FOLDER_LAYOUTS:
        raise DataError(f'unknown folder layout {layout!r}: use one of '
                        f'{FOLDER_LAYOUTS}')
    _require_dir(root, 'input')
    relpaths = sorted((rel.replace(os.sep, '/') for rel in scandir(
        root, IMAGE_EXTENSIONS, recursive=True, case_sensitive=False)),
                      key=_walk_order)
    depth = {'flat': 1, 'class': 2, 'split/class': 3}[layout]
    shallow = [r for r in relpaths if r.count('/') + 1 < depth]
    if shallow:
        raise DataError(f'layout {layout!r} needs images at least {depth} '
                        f'levels below {root!r}, but {shallow[0]!r} is not: '
                        'choose another --folder-layout')
    class_level = {'flat': None, 'class': 0, 'split/class': 1}[layout]
    classes = None
    if class_level is not None:
        classes = sorted({r.split('/')[class_level] for r in relpaths})
    records = []
    for rel in relpaths:
        parts = rel.split('/')
        label = None if classes is None else classes.index(parts[class_level])
        records.append(
            Record(osp.join(root, rel), rel, label,
                   parts[0] if layout == 'split/class' else split))
    return Source(records, classes, len(classes or ()))


def list_file(path: str,
              root: Optional[str] = None,
              split: str = 'train',
              classes: Optional[Sequence[str]] = None) -> Source:
    """Images listed one per line as ``path [label]``.

    Args:
        path (str): The list file. Blank lines and ``#`` comments are
            skipped; paths may contain spaces when a label follows.
        root (str, optional): Folder that relative paths start from
            (default: the list file's folder).
        split (str): Split of every image.
        classes (Sequence[str], optional): Class names; by default the
            classes are ``0 .. max label``.

    Returns:
        Source: The records.
    """
    if not osp.isfile(path):
        raise DataError(f'list file {path!r} not found: check the path')
    root = osp.dirname(osp.abspath(path)) if root is None else root
    records, labelled = [], set()
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            name, label = line, None
            head, _, tail = line.rpartition(' ')
            if head and tail.lstrip('-').isdigit():
                name, label = head.strip(), int(tail)
                if label < 0:
                    raise DataError(f'{path}:{lineno}: negative label '
                                    f'{label}; labels are class indices')
            labelled.add(label is not None)
            full = name if osp.isabs(name) else osp.join(root, name)
            rel = osp.relpath(full, root)
            if rel.startswith('..'):  # outside root: keep the whole path
                rel = osp.abspath(full).lstrip(os.sep)
            records.append(Record(full, rel.replace(os.sep, '/'), label,
                                  split))
    if len(labelled) > 1:
        raise DataError(f'{path}: some lines have a label and some do not; '
                        'label every line or none')
    labels = [r.label for r in records if r.label is not None]
    if classes is not None:
        classes = list(classes)
        bad = [lb for lb in labels if lb >= len(classes)]
        if bad:
            raise DataError(f'{path}: label {bad[0]} is outside the '
                            f'{len(classes)} classes given')
    elif labels:
        classes = [str(i) for i in range(max(labels) + 1)]
    return Source(records, classes, len(classes or ()))


def from_layout(layout: Layout) -> Source:
    """Records of a packer layout (:mod:`dmue_mm.datasets.packers`), so that
    the official RAF-DB and AffectNet layouts are parsed in one place."""
    skipped, count = list(layout.rejected), len(layout.rejected)
    name = layout.extra_meta.get('layout', 'dataset')
    for split, counts in layout.extra_meta.get('dropped', {}).items():
        for reason, n in counts.items():
            skipped.append((f'{name} {split} split',
                            f'{n} left out: label {reason} is not one of '
                            'the classes'))
            count += n
    classes = layout.classes
    names = None if isinstance(classes, int) else list(classes)
    records = [
        Record(item.source, item.key, item.label, item.split)
        for item in layout.items
    ]
    return Source(records, names,
                  len(names) if names else int(classes), skipped, count)


def list_rafdb(root: str) -> Source:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` and the original
    photos in ``Image/original/`` (labels 1-7 become 0-6; the split is the
    file-name prefix).

    Args:
        root (str): The ``basic`` folder (or the folder that holds it).
    """
    return from_layout(
        rafdb_layout(root, image_dir='Image/original', suffix=''))


def list_affectnet(root: str, num_classes: int = 8) -> Source:
    """AffectNet (manually annotated): ``training.csv`` (split ``train``) and
    ``validation.csv`` (split ``test``, as the DMUE protocol uses it), images
    in ``Manually_Annotated_Images/``.

    Labels ``>= num_classes`` (Contempt for AffectNet-7; None, Uncertain,
    No-Face) are left out; their counts per split go to ``skipped``.

    Args:
        root (str): The folder with ``Manually_Annotated_file_lists/``.
        num_classes (int): 7 or 8.
    """
    if num_classes not in (7, 8):
        raise DataError(f'AffectNet has 7 or 8 classes, got {num_classes}')
    return from_layout(affectnet_layout(root, num_classes))
