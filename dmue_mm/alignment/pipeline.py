"""The offline alignment run behind ``tools/align.py``.

Images are decoded (and downscaled for detection) in DataLoader worker
processes; the main process groups them by size, runs MTCNN on batches,
warps each face from the full-resolution image and writes it atomically to
a folder that mirrors the input tree, or to an LMDB through
:class:`~dmue_mm.datasets.LMDBWriter`.

Bookkeeping, next to the output:

* a journal (``.align_journal.tsv``) gets one line per finished image as it
  is done, so a rerun (after a crash or Ctrl-C) skips it: an image counts as
  done when the journal says so and its outputs exist;
* ``report.tsv`` lists every input that gave no output, with the reason
  (unreadable file, no face, left out by the dataset's rules);
* ``alignment.jsonl``: one JSON record per written crop (source image,
  output, face box and score, the five landmarks, the 2x3 matrix that made
  the crop), appended as each image is done and rewritten at the end in
  input order, one record per output (see :func:`crop_record`);
* the settings (``.align_settings.json``): a rerun with other settings is
  refused unless ``overwrite`` is set;
* for folders, ``labels.txt`` (``relpath [label]``, MMPretrain's list
  format), ``<split>.txt`` per split and ``classes.txt``.
"""
import json
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from torch.utils.data import DataLoader, Dataset

from dmue_mm.datasets import LMDBWriter
from dmue_mm.datasets.lmdb_io import encode_image, read_lmdb_metadata
from dmue_mm.utils.errors import CLIError
from dmue_mm.utils.fileio import write_bytes

from .aligner import AlignedFace, FaceAligner
from .detector import FaceDetector, prepare_for_detection
from .imageio import ImageReadError, load_rgb
from .sources import Record, Source
from .template import DMUE_TEMPLATE

__all__ = [
    'AlignSettings', 'AlignSummary', 'run_alignment', 'output_names',
    'crop_record', 'read_records'
]

_EXT = {'png': '.png', 'jpeg': '.jpg'}


@dataclass
class AlignSettings:
    """What decides the content of the outputs (a rerun must match).

    Attributes:
        mode (str): ``'align'`` or ``'crop'``.
        keep_all (bool): Every face (``<name>_face<i>``) or the largest.
        refine (bool): Second landmark pass (``'align'`` only).
        image_format (str): ``'png'`` or ``'jpeg'``.
        jpeg_quality (int): JPEG quality.
        max_size (int): Longest side of the detection image.
        min_face_size (int): MTCNN's smallest face, in detection pixels.
    """
    mode: str = 'align'
    keep_all: bool = False
    refine: bool = True
    image_format: str = 'png'
    jpeg_quality: int = 95
    max_size: int = 1280
    min_face_size: int = 20

    def __post_init__(self):
        if self.image_format not in _EXT:
            raise CLIError(f'image format must be one of {sorted(_EXT)}, '
                           f'got {self.image_format!r}')


@dataclass
class AlignSummary:
    """Counts of one run (``done_before`` were skipped as finished)."""
    total: int = 0
    aligned: int = 0
    faces: int = 0
    failed: int = 0
    done_before: int = 0
    left_out: int = 0
    seconds: float = 0.0
    report: str = ''
    failures: Dict[str, int] = field(default_factory=dict)

    def add_failure(self, reason: str) -> None:
        """Count a failure under the part of its reason before ``:``."""
        self.failed += 1
        kind = reason.split(':')[0]
        self.failures[kind] = self.failures.get(kind, 0) + 1

    @property
    def processed(self) -> int:
        """Images decoded and detected in this run."""
        return self.aligned + self.failed

    def line(self) -> str:
        """One-line summary printed by the tool."""
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        reasons = ', '.join(
            f'{n} {r}'
            for r, n in sorted(self.failures.items(), key=lambda kv: -kv[1]))
        return (f'aligned {self.aligned} images ({self.faces} faces), '
                f'failed {self.failed}' +
                (f' ({reasons})' if reasons else '') +
                f', skipped {self.done_before} done earlier, '
                f'{self.left_out} left out by the dataset; '
                f'{rate:.1f} images/s; report: {self.report}')


def output_names(record: Record, faces: int, keep_all: bool,
                 image_format: str) -> List[str]:
    """Output relative paths of a record: the input path with the format's
    extension, and ``_face<i>`` per face with ``keep_all``."""
    stem = osp.splitext(record.relpath)[0]
    ext = _EXT[image_format]
    if not keep_all:
        return [stem + ext]
    return [f'{stem}_face{i}{ext}' for i in range(faces)]


def crop_record(record: Record, output: str, face: AlignedFace,
                mode: str) -> dict:
    """The audit record of one written crop (a line of ``alignment.jsonl``).

    Args:
        record (Record): The input image.
        output (str): The crop's path relative to the output folder, or its
            LMDB key (``<split>/<name>``).
        face (AlignedFace): The aligned face.
        mode (str): ``'align'`` or ``'crop'``.

    Returns:
        dict: ``source`` (the input file), ``output``, ``split``, ``label``,
        ``mode``, ``box`` (x0, y0, x1, y1) and ``score`` of the MTCNN face,
        ``landmarks`` (5 x [x, y]: eyes, nose tip, mouth corners, as used for
        the warp), ``refined`` (whether the refinement pass gave them) and
        ``matrix`` (2 x 3, source pixels to crop pixels, OpenCV's
        ``warpAffine`` convention). Coordinates are in the pixels of the
        source image as read (EXIF orientation applied).
    """
    return dict(source=record.path,
                output=output,
                split=record.split,
                label=record.label,
                mode=mode,
                box=[float(v) for v in face.box],
                score=float(face.prob),
                landmarks=np.asarray(face.landmarks, float).tolist(),
                refined=bool(face.refined),
                matrix=np.asarray(face.matrix, float).tolist())


def read_records(path: str) -> List[dict]:
    """The records of an ``alignment.jsonl`` file (a line cut short by a
    crash is skipped)."""
    out = []
    if not osp.isfile(path):
        return out
    with open(path, encoding='utf-8') as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


# ----------------------------------------------------------------------
# decoding in worker processes
# ----------------------------------------------------------------------
class _DecodeDataset(Dataset):
    """Decode images and make their detection inputs (runs in workers)."""

    def __init__(self, paths: Sequence[str], max_size: int):
        self.paths = list(paths)
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = load_rgb(self.paths[index])
        except ImageReadError as exc:
            return index, None, None, str(exc)
        return index, image, prepare_for_detection(image, self.max_size), None


def _identity(item):
    return item


class _ShapeBuckets:
    """Hold decoded images by detection size; hand out batches of one size
    (exact batching), flushing the largest bucket when too many wait."""

    def __init__(self, batch_size: int, window: int):
        self.batch_size = batch_size
        self.window = window
        self.buckets: Dict[Tuple[int, ...], list] = {}

    def add(self, item) -> List[list]:
        shape = item[2].image.shape
        bucket = self.buckets.setdefault(shape, [])
        bucket.append(item)
        if len(bucket) >= self.batch_size:
            return [self.buckets.pop(shape)]
        if sum(len(b) for b in self.buckets.values()) > self.window:
            largest = max(self.buckets, key=lambda k: len(self.buckets[k]))
            return [self.buckets.pop(largest)]
        return []

    def drain(self) -> List[list]:
        out = list(self.buckets.values())
        self.buckets.clear()
        return out


# ----------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------
class _FolderSink:
    """Aligned images as files mirroring the input tree."""

    def __init__(self, out: str, settings: AlignSettings):
        self.out = out
        self.settings = settings
        os.makedirs(out, exist_ok=True)

    def exists(self, record: Record, names: List[str]) -> bool:
        return all(osp.isfile(osp.join(self.out, n)) for n in names)

    def write(self, record: Record, name: str, face: AlignedFace) -> None:
        write_bytes(
            osp.join(self.out, name),
            encode_image(face.image, self.settings.image_format,
                         self.settings.jpeg_quality))

    def close(self, source: Source, outputs: List[Tuple[Record,
                                                        List[str]]]) -> None:
        """Write the label lists and class names."""
        labelled = source.num_classes > 0
        lines: Dict[str, List[str]] = {}
        for record, names in outputs:
            for name in names:
                lines.setdefault(
                    record.split,
                    []).append(f'{name} {record.label}' if labelled else name)
        every = [line for split in lines.values() for line in split]
        _write_lines(osp.join(self.out, 'labels.txt'), every)
        if len(lines) > 1:
            for split, split_lines in lines.items():
                _write_lines(osp.join(self.out, f'{split}.txt'), split_lines)
        if source.classes:
            _write_lines(osp.join(self.out, 'classes.txt'), source.classes)


class _LMDBSink:
    """Aligned images in our LMDB format (keys ``<split>/<relpath>``)."""

    def __init__(self, out: str, source: Source, settings: AlignSettings,
                 overwrite: bool):
        if not source.num_classes:
            raise CLIError('LMDB output needs labels: use a labelled list '
                           'file, --folder-layout class or split/class, or '
                           '--dataset rafdb/affectnet (or write a folder)')
        self.out = out
        self.finished_keys = None
        if osp.exists(out) and not overwrite:
            meta = read_lmdb_metadata(out)
            self.finished_keys = {(split, key)
                                  for split, info in meta['splits'].items()
                                  for key in info['keys']}
            self.writer = None
        else:
            self.writer = LMDBWriter(
                out,
                source.classes or source.num_classes,
                image_format=settings.image_format,
                jpeg_quality=settings.jpeg_quality,
                resume=not overwrite,
                overwrite=overwrite,
                extra_meta=dict(alignment=asdict(settings)))

    def exists(self, record: Record, names: List[str]) -> bool:
        if self.writer is None:
            return all((record.split, n) in self.finished_keys for n in names)
        return all(self.writer.has(record.split, n) for n in names)

    def write(self, record: Record, name: str, face: AlignedFace) -> None:
        if self.writer is None:
            raise CLIError(f'{self.out!r} is a finished LMDB and new images '
                           'were found in the input: an LMDB cannot be '
                           'extended; rebuild it with --overwrite')
        self.writer.add(record.split, name, face.image, record.label)

    def close(self, source: Source, outputs) -> None:
        if self.writer is not None:
            self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def _write_lines(path: str, lines: Sequence[str]) -> None:
    write_bytes(path, ''.join(f'{line}\n' for line in lines).encode())


# ----------------------------------------------------------------------
# journal and settings
# ----------------------------------------------------------------------
class _Journal:
    """Append-only record of finished images: ``ok<TAB>relpath<TAB>faces``
    or ``fail<TAB>relpath<TAB>reason``."""

    def __init__(self, path: str):
        self.path = path
        self.entries: Dict[str, Tuple[str, str]] = {}
        if osp.isfile(path):
            with open(path, encoding='utf-8') as f:
                for line in f:
                    parts = line.rstrip('\n').split('\t')
                    if len(parts) == 3 and parts[0] in ('ok', 'fail'):
                        self.entries[parts[1]] = (parts[0], parts[2])
        self._file = open(path, 'a', encoding='utf-8')

    def add(self, status: str, relpath: str, value: str) -> None:
        value = ' '.join(str(value).split())  # one line, no tabs
        self.entries[relpath] = (status, value)
        self._file.write(f'{status}\t{relpath}\t{value}\n')
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _Records:
    """``alignment.jsonl``: appended (flushed) as crops are written; at the
    end rewritten atomically with the last record of every finished output,
    in input order, so that a crash or a redone image leaves no stale or
    repeated line."""

    def __init__(self, path: str, lmdb_out: bool):
        self.path = path
        self.lmdb_out = lmdb_out
        cut = False
        if osp.isfile(path) and osp.getsize(path):
            with open(path, 'rb') as f:
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b'\n'
        self._file = open(path, 'a', encoding='utf-8')
        if cut:  # a line cut short by a crash: start a new one
            self._file.write('\n')

    def output(self, record: Record, name: str) -> str:
        """The ``output`` field: relative path, or LMDB key."""
        return f'{record.split}/{name}' if self.lmdb_out else name

    def add(self, record: Record, name: str, face: AlignedFace,
            mode: str) -> None:
        line = json.dumps(crop_record(record, self.output(record, name), face,
                                      mode))
        self._file.write(line + '\n')
        self._file.flush()

    def finish(self, outputs: List[Tuple[Record, List[str]]]) -> None:
        self._file.close()
        latest = {r['output']: r for r in read_records(self.path)}
        keys = [
            self.output(record, name) for record, names in outputs
            for name in names
        ]
        lines = [json.dumps(latest[k]) for k in keys if k in latest]
        write_bytes(self.path, ''.join(f'{line}\n' for line in lines).encode())

    def close(self) -> None:
        self._file.close()


def _check_settings(path: str, settings: AlignSettings,
                    overwrite: bool) -> None:
    current = asdict(settings)
    if osp.isfile(path) and not overwrite:
        with open(path, encoding='utf-8') as f:
            previous = json.load(f)
        changed = sorted(k for k in current if previous.get(k) != current[k])
        if changed:
            raise CLIError(
                f'the output was written with other settings '
                f'({", ".join(f"{k}={previous.get(k)!r}" for k in changed)}):'
                ' use another --out, the same options, or --overwrite to '
                'redo everything')
    write_bytes(path, json.dumps(current, indent=1).encode())


# ----------------------------------------------------------------------
def _bookkeeping_paths(out: str, lmdb_out: bool,
                       report: Optional[str]) -> Dict[str, str]:
    """Journal, settings and report: inside an output folder, or beside an
    LMDB (whose folder belongs to the writer)."""
    if lmdb_out:
        prefix = out.rstrip('/')
        return dict(journal=f'{prefix}.align_journal.tsv',
                    settings=f'{prefix}.align_settings.json',
                    records=f'{prefix}.alignment.jsonl',
                    report=report or f'{prefix}.report.tsv')
    return dict(journal=osp.join(out, '.align_journal.tsv'),
                settings=osp.join(out, '.align_settings.json'),
                records=osp.join(out, 'alignment.jsonl'),
                report=report or osp.join(out, 'report.tsv'))


def run_alignment(source: Source,
                  out: str,
                  settings: Optional[AlignSettings] = None,
                  device: str = 'cpu',
                  batch_size: int = 16,
                  workers: int = 2,
                  report: Optional[str] = None,
                  retry_failed: bool = False,
                  overwrite: bool = False,
                  progress: bool = True,
                  detector: Optional[FaceDetector] = None) -> AlignSummary:
    """Align every record of ``source`` into ``out``.

    Args:
        source (Source): The inputs (see :mod:`.sources`).
        out (str): Output folder, or an LMDB when it ends with ``.lmdb``.
        settings (AlignSettings, optional): Mode and output options.
        device (str): ``'cpu'`` or ``'cuda'``.
        batch_size (int): Images of one size per MTCNN forward pass.
        workers (int): Decoding processes (0: decode in this process).
        report (str, optional): Report path (default ``<out>/report.tsv``,
            or ``<out>.report.tsv`` for an LMDB).
        retry_failed (bool): Try again the images that failed in an earlier
            run (by default they are skipped; the report keeps them).
        overwrite (bool): Ignore earlier runs and redo everything (files
            of an output folder are replaced, not deleted first).
        progress (bool): Show a progress bar.
        detector (FaceDetector, optional): Reuse a detector (tests).

    Returns:
        AlignSummary: The counts of this run.
    """
    settings = settings or AlignSettings()
    if workers < 0 or batch_size < 1:
        raise CLIError(f'--workers must be >= 0 and --batch-size >= 1, got '
                       f'{workers} and {batch_size}')
    lmdb_out = out.rstrip('/').endswith('.lmdb')
    paths = _bookkeeping_paths(out, lmdb_out, report)
    if overwrite:
        for key in ('journal', 'settings', 'records'):
            if osp.isfile(paths[key]):
                os.remove(paths[key])
    os.makedirs(out if not lmdb_out else osp.dirname(osp.abspath(out)),
                exist_ok=True)
    _check_settings(paths['settings'], settings, overwrite)

    sink = (_LMDBSink(out, source, settings, overwrite)
            if lmdb_out else _FolderSink(out, settings))
    journal = _Journal(paths['journal'])
    records = _Records(paths['records'], lmdb_out)
    summary = AlignSummary(total=len(source.records),
                           left_out=source.skipped_count,
                           report=paths['report'])
    todo = _plan(source.records, journal, sink, settings, retry_failed,
                 summary)

    start = time.time()
    try:
        if todo:
            detector = detector or FaceDetector(
                device=device,
                min_face_size=settings.min_face_size,
                max_size=settings.max_size,
                batch_size=batch_size)
            aligner = FaceAligner(detector, settings.mode, DMUE_TEMPLATE,
                                  settings.keep_all, settings.refine)
            _process(todo, aligner, sink, journal, records, settings,
                     batch_size, workers, progress, summary)
        outputs = _finished_outputs(source.records, journal, settings)
        sink.close(source, outputs)
        records.finish(outputs)
    except BaseException:
        if isinstance(sink, _LMDBSink):
            sink.abort()
        raise
    finally:
        summary.seconds = time.time() - start
        _write_report(paths['report'], source, journal)
        journal.close()
        records.close()
    return summary


def _plan(records: Sequence[Record], journal: _Journal, sink,
          settings: AlignSettings, retry_failed: bool,
          summary: AlignSummary) -> List[Record]:
    """The records still to do; an image whose output name is already
    another's fails (e.g. ``a.jpg`` and ``a.png`` both give ``a.png``)."""
    todo, owner = [], {}
    for record in records:
        status, value = journal.entries.get(record.relpath, (None, None))
        if status == 'fail' and not retry_failed:
            summary.done_before += 1
            continue
        base = output_names(record, 1, False, settings.image_format)[0]
        key = (record.split, base) if isinstance(sink, _LMDBSink) else base
        if key in owner:
            reason = (f'name collision: output {base} is also that of '
                      f'{owner[key].relpath}; rename one of them')
            journal.add('fail', record.relpath, reason)
            summary.add_failure(reason)
            continue
        owner[key] = record
        if status == 'ok' and sink.exists(
                record,
                output_names(record, int(value), settings.keep_all,
                             settings.image_format)):
            summary.done_before += 1
            continue
        todo.append(record)
    return todo


def _process(todo: List[Record], aligner: FaceAligner, sink, journal: _Journal,
             records: _Records, settings: AlignSettings, batch_size: int,
             workers: int, progress: bool, summary: AlignSummary) -> None:
    from tqdm import tqdm
    loader = DataLoader(
        _DecodeDataset([r.path for r in todo], settings.max_size),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_identity,
        prefetch_factor=-(-batch_size // workers) + 1 if workers else None)
    buckets = _ShapeBuckets(batch_size, window=2 * batch_size)
    bar = tqdm(total=len(todo),
               unit='img',
               disable=not progress,
               dynamic_ncols=True)

    def fail(record: Record, reason: str) -> None:
        journal.add('fail', record.relpath, reason)
        summary.add_failure(reason)

    def run_batch(batch) -> None:
        results = aligner.align_batch([item[1] for item in batch],
                                      [item[2] for item in batch])
        for (index, *_), result in zip(batch, results):
            record = todo[index]
            if result.error:
                fail(record, result.error)
                continue
            names = output_names(record, len(result.faces), settings.keep_all,
                                 settings.image_format)
            for name, face in zip(names, result.faces):
                sink.write(record, name, face)
                records.add(record, name, face, settings.mode)
            journal.add('ok', record.relpath, str(len(names)))
            summary.aligned += 1
            summary.faces += len(names)
        bar.update(len(batch))
        bar.set_postfix(faces=summary.faces, failed=summary.failed)

    try:
        for index, image, prepared, error in loader:
            if error is not None:
                fail(todo[index], error)
                bar.update(1)
                continue
            for batch in buckets.add((index, image, prepared)):
                run_batch(batch)
        for batch in buckets.drain():
            run_batch(batch)
    finally:
        bar.close()


def _finished_outputs(records: Sequence[Record], journal: _Journal,
                      settings: AlignSettings):
    outputs = []
    for record in records:
        status, value = journal.entries.get(record.relpath, (None, None))
        if status == 'ok':
            outputs.append((record,
                            output_names(record, int(value), settings.keep_all,
                                         settings.image_format)))
    return outputs


def _write_report(path: str, source: Source, journal: _Journal) -> None:
    """``path<TAB>reason`` for every input without output, input order."""
    rows = [(path_, reason) for path_, reason in source.skipped]
    for record in source.records:
        status, value = journal.entries.get(record.relpath, (None, None))
        if status == 'fail':
            rows.append((record.path, value))
    lines = ''.join(f'{p}\t{r}\n' for p, r in rows)
    write_bytes(path, ('path\treason\n' + lines).encode())
