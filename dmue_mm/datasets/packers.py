"""Pack the benchmarks' official release layouts into our LMDB format.

Each ``*_layout`` function reads one layout's annotations (fast, no image is
decoded) and returns a :class:`Layout`: the samples to pack, the classes and
dataset-level information such as the counts of dropped samples.
:func:`pack_layout` then writes them with :class:`~.lmdb_io.LMDBWriter`:
atomically, resumably, with a progress bar, and listing every unreadable
image (source and reason) in a report file.

Layouts (see ``docs/datasets.md``):
RAF-DB basic, AffectNet (manually annotated csv files), FERPlus
(``fer2013.csv`` + ``fer2013new.csv``), a folder tree ``split/class/image``
(SFEW), a generic ``path label`` list, and the original DMUE LMDB + list.
"""
import csv
import functools
import os
import os.path as osp
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import cv2
import numpy as np
from tqdm import tqdm

from dmue_mm.utils.errors import DataError
from dmue_mm.utils.fileio import write_text
from .fer_benchmarks import (AFFECTNET8_CLASSES, FERPLUS_CLASSES,
                             FERPLUS_OTHER_VOTES, RAFDB_CLASSES)
from .label_files import read_label_lines
from .lmdb_io import (ImageDecodeError, LMDBReader, LMDBWriter,
                      MissingKeyError, decode_image, open_lmdb)
from .original_lmdb import original_classes, parse_original_list, raw_rgb

__all__ = [
    'PackItem', 'Layout', 'PackSummary', 'IMAGE_EXTENSIONS', 'pack_layout',
    'rafdb_layout', 'affectnet_layout', 'ferplus_layout', 'folder_layout',
    'list_layout', 'original_layout', 'ferplus_label', 'file_item',
    'FERPLUS_SPLITS'
]

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp',
                    '.ppm', '.pgm')
_MAGIC = {'png': b'\x89PNG\r\n\x1a\n', 'jpeg': b'\xff\xd8\xff'}
# Errors of one image: reported, and the pack goes on.
_UNREADABLE = (OSError, ImageDecodeError, MissingKeyError)


class PackItem(NamedTuple):
    """One sample to pack.

    Attributes:
        split (str): Split name.
        key (str): Key within the split.
        label (int): Class index.
        source (str): Where it comes from (file, csv line), for the report.
        load (callable): Returns the image, as encoded bytes (a file's
            content) or an RGB/grey uint8 array; raises ``OSError`` or
            ``ImageDecodeError`` if it cannot.
        extra (dict, optional): Per-sample values for the metadata.
    """
    split: str
    key: str
    label: int
    source: str
    load: Callable[[], Union[bytes, np.ndarray]]
    extra: Optional[Dict[str, Any]] = None


@dataclass
class Layout:
    """The samples of a release layout, ready to pack.

    Attributes:
        items (list[PackItem]): Samples, in packing order.
        classes (int | tuple): Class names in label order, or their number.
        extra_meta (dict): Dataset-level information for the metadata
            (``layout``, ``dropped`` counts per split and reason...).
        rejected (list[tuple]): ``(source, reason)`` of files that are not
            images, listed in the report.
    """
    items: List[PackItem]
    classes: Union[int, Tuple[str, ...]]
    extra_meta: Dict[str, Any] = field(default_factory=dict)
    rejected: List[Tuple[str, str]] = field(default_factory=list)


@dataclass
class PackSummary:
    """What a pack did."""
    out_path: str
    report_path: str
    written: int
    resumed: int
    unreadable: int
    counts: Dict[str, int]
    dropped: Dict[str, Dict[str, int]]


def _read_bytes(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def file_item(split: str,
              key: str,
              label: int,
              path: str,
              extra: Optional[Dict[str, Any]] = None) -> PackItem:
    """A sample whose image is the file ``path``."""
    return PackItem(split, key, label, path,
                    functools.partial(_read_bytes, path), extra)


def _storable(data: Union[bytes, np.ndarray], image_format: str,
              resize: Optional[int], source: str) -> Union[bytes, np.ndarray]:
    """Keep a file's bytes when they already are in ``image_format`` and no
    resize is asked (no re-encoding loss), else an RGB/grey array."""
    if isinstance(data, bytes):
        if resize is None and data.startswith(_MAGIC[image_format]):
            return data
        data = cv2.cvtColor(decode_image(data, source), cv2.COLOR_BGR2RGB)
    if resize is not None and data.shape[:2] != (resize, resize):
        data = cv2.resize(
            data, (resize, resize), interpolation=cv2.INTER_CUBIC)
    return data


def pack_layout(layout: Layout,
                out_path: str,
                image_format: str = 'png',
                jpeg_quality: int = 95,
                resize: Optional[int] = None,
                resume: bool = False,
                overwrite: bool = False,
                report_path: Optional[str] = None,
                commit_every: int = 256,
                progress: bool = True) -> PackSummary:
    """Write a layout's samples to an LMDB.

    Args:
        layout (Layout): From one of the ``*_layout`` functions.
        out_path (str): The LMDB folder to create.
        image_format (str): ``'png'`` (lossless) or ``'jpeg'``. Source files
            already in that format are stored byte for byte (unless
            resized); others are decoded and encoded.
        jpeg_quality (int): JPEG quality when encoding.
        resize (int, optional): Resize every image to ``resize`` x
            ``resize`` (bicubic, as the original ``make_lmdb.py``).
        resume (bool): Continue an interrupted pack of the same layout.
        overwrite (bool): Replace an existing ``out_path``.
        report_path (str, optional): Where to list unreadable images.
            Defaults to ``<out_path>.unreadable.txt``.
        commit_every (int): Images per LMDB transaction.
        progress (bool): Show a progress bar.

    Returns:
        PackSummary: Counts and paths.
    """
    report_path = report_path or osp.normpath(out_path) + '.unreadable.txt'
    unreadable = list(layout.rejected)
    written = 0
    with LMDBWriter(
            out_path,
            layout.classes,
            image_format=image_format,
            jpeg_quality=jpeg_quality,
            resume=resume,
            extra_meta=layout.extra_meta,
            overwrite=overwrite,
            commit_every=commit_every) as writer:
        resumed = writer.resumed
        bar = tqdm(
            layout.items,
            desc=f'packing {osp.basename(osp.normpath(out_path))}',
            unit='img',
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True)
        for item in bar:
            if writer.has(item.split, item.key):
                continue
            try:
                image = _storable(item.load(), image_format, resize,
                                  item.source)
                writer.add(item.split, item.key, image, item.label, item.extra)
            except _UNREADABLE as exc:
                unreadable.append((item.source, _reason(exc, item.source)))
                continue
            written += 1
            bar.set_postfix(unreadable=len(unreadable), refresh=False)
        meta = writer.close()
    lines = (f'{source}\t{reason}\n' for source, reason in unreadable)
    write_text(report_path, ''.join(lines))
    return PackSummary(
        out_path=out_path,
        report_path=report_path,
        written=written,
        resumed=resumed,
        unreadable=len(unreadable),
        counts={
            s: info['count']
            for s, info in meta['splits'].items()
        },
        dropped=layout.extra_meta.get('dropped', {}))


def _reason(exc: Exception, source: str) -> str:
    """One-line reason of an unreadable image, without the source again."""
    if isinstance(exc, FileNotFoundError):
        return 'file not found'
    reason = ' '.join(str(exc).split())
    return reason[len(source) + 2:] if reason.startswith(source +
                                                         ': ') else reason


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------
def _require_file(path: str, what: str) -> str:
    if not osp.isfile(path):
        raise DataError(f'{what} {path!r} not found: check the dataset root '
                        '(see docs/datasets.md for the expected layout)')
    return path


def rafdb_layout(root: str,
                 image_dir: str = 'Image/aligned',
                 suffix: str = '_aligned') -> Layout:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` and its images.

    Labels are 1-based in the file (1 Surprise ... 7 Neutral) and become
    0-based; the split is the file-name prefix; keys are the listed names.

    Args:
        root (str): The ``basic`` folder (or the folder that contains it).
        image_dir (str): Image folder, relative to ``basic`` (or absolute,
            e.g. the output of ``tools/align.py``).
        suffix (str): Appended to the listed stem (``_aligned`` for
            ``Image/aligned``; ``''`` for ``Image/original``).
    """
    base = root if osp.isdir(osp.join(root, 'EmoLabel')) else osp.join(
        root, 'basic')
    list_path = _require_file(
        osp.join(base, 'EmoLabel', 'list_patition_label.txt'),
        'RAF-DB label file')
    items = []
    for line in read_label_lines(list_path, '<split>_<id>.jpg <1-7>'):
        split = line.name.split('_', 1)[0]
        if split not in ('train',
                         'test') or not 1 <= line.label <= len(RAFDB_CLASSES):
            raise DataError(
                f'{list_path}:{line.line}: expected "train_*|test_* <1-7>", '
                f'got {line.name!r} {line.label}; fix the line')
        stem, ext = osp.splitext(line.name)
        path = osp.join(base, image_dir, stem + suffix + ext)
        items.append(file_item(split, line.name, line.label - 1, path))
    return Layout(items, RAFDB_CLASSES, dict(layout='rafdb'))


_AFFECTNET_DROPPED = {8: 'None', 9: 'Uncertain', 10: 'No-Face'}


def affectnet_layout(root: str,
                     num_classes: int = 8,
                     image_dir: str = 'Manually_Annotated_Images',
                     csv_files: Optional[Dict[str, str]] = None) -> Layout:
    """AffectNet, manually annotated part.

    Keeps expression codes ``0..num_classes-1`` and drops the others
    (Contempt for 7 classes; 8 None, 9 Uncertain, 10 No-Face), counting them
    per split in ``extra_meta['dropped']``. Keys are
    ``subDirectory_filePath``.

    Args:
        root (str): The folder with ``Manually_Annotated_file_lists`` and
            the image folder.
        num_classes (int): 7 or 8.
        image_dir (str): Image folder relative to ``root`` (or absolute).
        csv_files (dict, optional): Split name -> csv path relative to
            ``Manually_Annotated_file_lists``. Defaults to ``training.csv``
            as ``train`` and ``validation.csv`` as ``test``.
    """
    if num_classes not in (7, 8):
        raise ValueError(f'AffectNet has 7 or 8 classes, got {num_classes}')
    csv_files = csv_files or {
        'train': 'training.csv',
        'test': 'validation.csv'
    }
    dropped_codes = dict(_AFFECTNET_DROPPED)
    if num_classes == 7:
        dropped_codes[7] = AFFECTNET8_CLASSES[7]
    items, dropped = [], {}
    for split, name in csv_files.items():
        path = _require_file(
            osp.join(root, 'Manually_Annotated_file_lists', name),
            'AffectNet csv file')
        dropped[split] = counts = Counter()
        for number, relpath, code in _affectnet_rows(path):
            if code in dropped_codes:
                counts[code] += 1
                continue
            items.append(
                file_item(split, relpath, code,
                          osp.join(root, image_dir, relpath)))
    return Layout(
        items, AFFECTNET8_CLASSES[:num_classes],
        dict(
            layout=f'affectnet{num_classes}',
            dropped={
                s: {
                    f'{code} {dropped_codes[code]}': n
                    for code, n in sorted(c.items())
                }
                for s, c in dropped.items()
            }))


def _affectnet_rows(path: str):
    """Yield ``(line, subDirectory_filePath, expression)`` of a csv file,
    with or without its header line."""
    with open(path, newline='', encoding='utf-8') as f:
        rows = list(csv.reader(f))
    header = [c.strip() for c in rows[0]] if rows else []
    if 'subDirectory_filePath' in header and 'expression' in header:
        path_col = header.index('subDirectory_filePath')
        code_col = header.index('expression')
        start = 1
    else:  # validation.csv of some releases has no header line
        path_col, code_col, start = 0, 6, 0
    for number, row in enumerate(rows[start:], start + 1):
        if not row:
            continue
        try:
            code = int(row[code_col])
        except (IndexError, ValueError):
            raise DataError(
                f'{path}:{number}: expected the columns subDirectory_filePath,'
                'face_x,face_y,face_width,face_height,facial_landmarks,'
                f'expression,... with an integer expression, got '
                f'{",".join(row)[:80]!r}; fix the line')
        if not 0 <= code <= 10:
            raise DataError(f'{path}:{number}: expression code {code} is '
                            'outside 0-10; fix the line')
        yield number, row[path_col], code


FERPLUS_SPLITS = {
    'Training': 'train',
    'PublicTest': 'val',
    'PrivateTest': 'test'
}


def ferplus_label(votes: Sequence[int]) -> Union[int, str]:
    """Majority label of FERPlus votes, or the reason to drop the image.

    Args:
        votes (Sequence[int]): The 10 counts of ``fer2013new.csv`` (8
            emotions, unknown, NF).

    Returns:
        int | str: The emotion with the unique maximum, or ``'unknown/NF
        majority'`` (unknown or NF reaches the maximum) or ``'tie'`` (two
        emotions share the maximum).
    """
    top = max(votes)
    if top == 0 or max(votes[8:]) == top:
        return 'unknown/NF majority'
    emotions = list(votes[:8])
    if emotions.count(top) > 1:
        return 'tie'
    return emotions.index(top)


def ferplus_layout(fer2013_csv: str, ferplus_csv: str) -> Layout:
    """FERPlus: ``fer2013.csv`` pixels with ``fer2013new.csv`` votes.

    Rows are paired by position (both files list the same images in the
    same order; their ``Usage`` columns are checked). Rows without an
    ``Image name`` have no image. Labels are the majority over the 8
    emotions (:func:`ferplus_label`); dropped rows are counted per split
    and reason. Every sample keeps its votes as extras ``votes`` (8
    emotions, class order) and ``votes_other`` (unknown, NF). Splits:
    Training -> ``train``, PublicTest -> ``val``, PrivateTest -> ``test``.
    """
    fer_rows = _csv_dicts(fer2013_csv, ('pixels', 'Usage'))
    new_rows = _csv_dicts(ferplus_csv, ('Usage', 'Image name') +
                          tuple(c.lower() for c in FERPLUS_CLASSES) +
                          FERPLUS_OTHER_VOTES)
    if len(fer_rows) != len(new_rows):
        raise DataError(f'{ferplus_csv} has {len(new_rows)} rows but '
                        f'{fer2013_csv} has {len(fer_rows)}: they must list '
                        'the same images in the same order')
    vote_cols = [c.lower()
                 for c in FERPLUS_CLASSES] + list(FERPLUS_OTHER_VOTES)
    items, dropped = [], {}
    for number, (old, new) in enumerate(zip(fer_rows, new_rows), 2):
        usage = new['Usage'].strip()
        if usage != old['Usage'].strip() or usage not in FERPLUS_SPLITS:
            raise DataError(
                f'{ferplus_csv}:{number}: Usage {usage!r} but {fer2013_csv}:'
                f'{number} has {old["Usage"]!r} (expected one of '
                f'{sorted(FERPLUS_SPLITS)}): the files must list the same '
                'images in the same order')
        split = FERPLUS_SPLITS[usage]
        counts = dropped.setdefault(split, Counter())
        name = (new['Image name'] or '').strip()
        if not name:
            counts['no image name'] += 1
            continue
        try:
            votes = [int(new[c]) for c in vote_cols]
        except (TypeError, ValueError):
            raise DataError(f'{ferplus_csv}:{number}: the vote counts must be '
                            'integers; fix the line')
        label = ferplus_label(votes)
        if isinstance(label, str):
            counts[label] += 1
            continue
        source = f'{fer2013_csv}:{number}'
        items.append(
            PackItem(split, name, label, source,
                     functools.partial(_fer_pixels, old['pixels'], source),
                     dict(votes=votes[:8], votes_other=votes[8:])))
    return Layout(
        items, FERPLUS_CLASSES,
        dict(
            layout='ferplus',
            vote_names=dict(
                votes=[c.lower() for c in FERPLUS_CLASSES],
                votes_other=list(FERPLUS_OTHER_VOTES)),
            dropped={
                s: dict(sorted(c.items()))
                for s, c in dropped.items()
            }))


def _csv_dicts(path: str, columns: Sequence[str]) -> List[Dict[str, str]]:
    _require_file(path, 'csv file')
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f'{path}: the header lacks the columns {missing} '
                            f'(it has {reader.fieldnames}); is it the right '
                            'file?')
        return list(reader)


def _fer_pixels(pixels: str, source: str) -> np.ndarray:
    """48x48 grey image from FER2013's space-separated pixel values."""
    values = pixels.split()
    if len(values) != 48 * 48 or not all(v.isdigit() for v in values):
        raise ImageDecodeError(
            f'{source}: expected 2304 pixel values 0-255, got {len(values)} '
            'values')
    array = np.asarray(values, dtype=np.int64)
    if array.max() > 255:
        raise ImageDecodeError(f'{source}: pixel values above 255')
    return array.astype(np.uint8).reshape(48, 48)


def folder_layout(root: str,
                  splits: Optional[Dict[str, str]] = None,
                  classes: Optional[Sequence[str]] = None) -> Layout:
    """A folder tree ``root/<split folder>/<class>/<image>`` (e.g. SFEW).

    Keys are ``<class>/<file name>``. Files that are not images (by
    extension) or not inside a class folder go to the report.

    Args:
        root (str): The tree's root.
        splits (dict, optional): Split folder -> split name, e.g.
            ``{'Train': 'train', 'Val': 'test'}``. Defaults to every
            sub-folder, named in lower case.
        classes (Sequence[str], optional): Class folder names in label
            order. Defaults to the sorted class folders of all splits.
    """
    if not osp.isdir(root):
        raise DataError(f'image folder {root!r} not found: check the path')
    if splits is None:
        splits = {
            d: d.lower()
            for d in sorted(os.listdir(root)) if osp.isdir(osp.join(root, d))
        }
    for folder in splits:
        if not osp.isdir(osp.join(root, folder)):
            raise DataError(f'split folder {osp.join(root, folder)!r} not '
                            'found: check --splits')
    found = sorted({
        c
        for folder in splits
        for c in os.listdir(osp.join(root, folder))
        if osp.isdir(osp.join(root, folder, c))
    })
    classes = tuple(classes) if classes is not None else tuple(found)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f'{root}: class folders {unknown} are not among the '
                        f'classes {list(classes)}: add them to --classes or '
                        'remove them')
    items, rejected = [], []
    for folder, split in splits.items():
        split_dir = osp.join(root, folder)
        for name in sorted(os.listdir(split_dir)):
            if not osp.isdir(osp.join(split_dir, name)):
                rejected.append((osp.join(split_dir,
                                          name), 'not inside a class folder'))
                continue
            for filename in sorted(os.listdir(osp.join(split_dir, name))):
                path = osp.join(split_dir, name, filename)
                if not filename.lower().endswith(IMAGE_EXTENSIONS):
                    rejected.append((path, 'not an image file (extension)'))
                    continue
                items.append(
                    file_item(split, f'{name}/{filename}', classes.index(name),
                              path))
    return Layout(items, classes, dict(layout='folder'), rejected)


def list_layout(lists: Dict[str, str], image_root: str,
                classes: Union[int, Sequence[str]]) -> Layout:
    """Generic ``<path> <label>`` list files, one per split.

    Args:
        lists (dict): Split name -> list file. Paths in a list are relative
            to ``image_root``; labels are 0-based.
        image_root (str): Folder the listed paths are relative to.
        classes (int | Sequence[str]): Class names in label order, or their
            number.
    """
    num_classes = classes if isinstance(classes, int) else len(classes)
    items = []
    for split, list_path in lists.items():
        for line in read_label_lines(list_path):
            if not 0 <= line.label < num_classes:
                raise DataError(
                    f'{list_path}:{line.line}: label {line.label} is outside '
                    f'the {num_classes} classes (0-{num_classes - 1}); fix '
                    'the list or the classes')
            items.append(
                file_item(split, line.name, line.label,
                          osp.join(image_root, line.name)))
    return Layout(items,
                  classes if isinstance(classes, int) else tuple(classes),
                  dict(layout='list'))


def original_layout(
    lmdb_path: str,
    list_path: str,
    classes: Optional[Sequence[str]] = None,
    image_shape: Tuple[int, int, int] = (256, 256, 3)
) -> Layout:
    """The original DMUE LMDB (raw RGB values) with its list file.

    Keys become the relative paths after ``<split>_``; images are re-encoded
    (PNG keeps them bit-exact). Without ``classes`` the classes are unnamed
    and counted as the largest label + 1.
    """
    entries = parse_original_list(list_path)
    names, num_classes = original_classes(entries, classes, list_path)
    open_lmdb(lmdb_path).close()  # fail early on a missing/truncated LMDB
    reader = LMDBReader(lmdb_path)

    def load(key: str) -> np.ndarray:
        return raw_rgb(
            reader.get(key.encode()), image_shape, f'{lmdb_path}::{key}')

    items = [
        PackItem(e.split, e.relpath, e.label, f'{list_path}:{e.line} '
                 f'({e.key})', functools.partial(load, e.key)) for e in entries
    ]
    return Layout(items, names or num_classes, dict(layout='original'))
