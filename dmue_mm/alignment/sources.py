"""Inputs of the alignment tool: folder trees, list files and the official
RAF-DB / AffectNet layouts (``docs/datasets.md``), as lists of
:class:`Record`.

Every source gives the image path, the relative path it keeps in the
output, its label and split when known, the class names, and the entries it
leaves out with the reason (e.g. AffectNet's "None"/"Uncertain"/"No-Face"
labels), which the tool writes to its report: nothing is dropped silently.
"""
import csv
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence, Tuple

from dmue_mm.datasets import AFFECTNET8_CLASSES, RAFDB_CLASSES
from dmue_mm.utils.errors import DataError

from .imageio import IMAGE_EXTENSIONS

__all__ = [
    'Record', 'Source', 'FOLDER_LAYOUTS', 'list_folder', 'list_file',
    'list_rafdb', 'list_affectnet', 'AFFECTNET_CODES'
]

FOLDER_LAYOUTS = ('flat', 'class', 'split/class')
# AffectNet expression codes beyond the 8 emotions (docs/datasets.md).
AFFECTNET_CODES = AFFECTNET8_CLASSES + ('None', 'Uncertain', 'No-Face')


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
        skipped (list[tuple]): ``(path, reason)`` of entries left out.
    """
    records: List[Record]
    classes: Optional[List[str]] = None
    num_classes: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def _is_image(name: str) -> bool:
    return osp.splitext(name)[1].lower() in IMAGE_EXTENSIONS


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
    relpaths = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = osp.relpath(folder, root)
        relpaths += [
            f if rel == '.' else f'{rel}/{f}'.replace(os.sep, '/')
            for f in sorted(files) if _is_image(f)
        ]
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
        label = None if classes is None else classes.index(
            parts[class_level])
        records.append(
            Record(
                osp.join(root, rel), rel, label,
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
            records.append(
                Record(full, rel.replace(os.sep, '/'), label, split))
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


def list_rafdb(root: str) -> Source:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` and the original
    photos in ``Image/original/`` (labels 1-7 become 0-6; split from the
    file-name prefix).

    Args:
        root (str): The ``basic`` folder (or the folder that holds it).
    """
    if osp.isdir(osp.join(root, 'basic')):
        root = osp.join(root, 'basic')
    label_file = osp.join(root, 'EmoLabel', 'list_patition_label.txt')
    if not osp.isfile(label_file):
        raise DataError(f'{label_file!r} not found: --root must be RAF-DB\'s '
                        '"basic" folder (with EmoLabel/ and Image/original/)')
    records = []
    with open(label_file, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or not (
                    1 <= int(parts[1]) <= len(RAFDB_CLASSES)):
                raise DataError(f'{label_file}:{lineno}: expected '
                                f'"<name> <label 1-7>", got {line.strip()!r}')
            name = parts[0]
            split = name.split('_', 1)[0]
            records.append(
                Record(
                    osp.join(root, 'Image', 'original', name), name,
                    int(parts[1]) - 1, split))
    return Source(records, list(RAFDB_CLASSES), len(RAFDB_CLASSES))


def list_affectnet(root: str, num_classes: int = 8) -> Source:
    """AffectNet (manually annotated): ``training.csv`` (split ``train``) and
    ``validation.csv`` (split ``test``, as the DMUE protocol uses it).

    Labels ``>= num_classes`` (Contempt for AffectNet-7; None, Uncertain,
    No-Face) are left out and listed in ``skipped``.

    Args:
        root (str): The folder with ``Manually_Annotated_file_lists/`` and
            ``Manually_Annotated_Images/``.
        num_classes (int): 7 or 8.
    """
    if num_classes not in (7, 8):
        raise DataError(f'AffectNet has 7 or 8 classes, got {num_classes}')
    lists = osp.join(root, 'Manually_Annotated_file_lists')
    images = osp.join(root, 'Manually_Annotated_Images')
    records, skipped = [], []
    for split, name in (('train', 'training.csv'), ('test',
                                                    'validation.csv')):
        path = osp.join(lists, name)
        if not osp.isfile(path):
            raise DataError(f'{path!r} not found: --root must be the '
                            'AffectNet folder with '
                            'Manually_Annotated_file_lists/')
        with open(path, newline='', encoding='utf-8') as f:
            reader = csv.DictReader(f)
            missing = {'subDirectory_filePath', 'expression'} - set(
                reader.fieldnames or ())
            if missing:
                raise DataError(f'{path}: missing column(s) {sorted(missing)}'
                                '; is it an AffectNet file list?')
            for row in reader:
                rel = row['subDirectory_filePath'].strip()
                try:
                    code = int(row['expression'])
                except ValueError:
                    raise DataError(f'{path}: expression '
                                    f'{row["expression"]!r} of {rel} is not '
                                    'an integer') from None
                full = osp.join(images, rel)
                if not 0 <= code < num_classes:
                    what = (AFFECTNET_CODES[code]
                            if 0 <= code < len(AFFECTNET_CODES) else 'unknown')
                    skipped.append(
                        (full, f'label {code} ({what}) is not one of the '
                         f'AffectNet-{num_classes} classes'))
                    continue
                records.append(Record(full, rel, code, split))
    classes = list(AFFECTNET8_CLASSES[:num_classes])
    return Source(records, classes, num_classes, skipped)
