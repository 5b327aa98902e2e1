"""Reading and writing the plugin's LMDB image format.

The format (``dmue-mm-lmdb``, version 1) stores one encoded image (PNG or
JPEG) per key ``<split>/<key>`` and one JSON metadata entry under
:data:`META_KEY`::

    {"format": "dmue-mm-lmdb", "version": 1,
     "classes": ["Surprise", ...] or null, "num_classes": 7,
     "image_format": "png",
     "splits": {"train": {"keys": [...], "labels": [...], "count": N,
                          "class_counts": [...], "image_size": [H, W] or null,
                          "image_sizes": {"HxW": n, ...},
                          "extras": {"votes": [[...], ...]}}, ...},
     "extra": {...}}

:class:`LMDBWriter` writes it atomically (under ``<out>.partial``, renamed
when complete), resumable and with a growing map size; :class:`LMDBReader`
reads it through one read-only environment per process and LMDB, opened on
first use, so that DataLoader workers and DDP ranks never use an environment
opened before a fork.
"""
import json
import os
import os.path as osp
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import lmdb
import numpy as np

from dmue_mm.utils.errors import DataError

__all__ = [
    'FORMAT_NAME', 'FORMAT_VERSION', 'META_KEY', 'ImageDecodeError',
    'MissingKeyError', 'LMDBWriter', 'LMDBReader', 'open_lmdb', 'shared_lmdb',
    'close_lmdb', 'read_lmdb_metadata', 'decode_image', 'encode_image',
    'image_key', 'normalize_classes'
]

FORMAT_NAME = 'dmue-mm-lmdb'
FORMAT_VERSION = 1
_RESERVED = '__dmue__'
META_KEY = f'{_RESERVED}/meta'.encode()
_STATE_KEY = f'{_RESERVED}/state'.encode()
_RECORD_PREFIX = f'{_RESERVED}/rec/'.encode()
_MAX_KEY_BYTES = 511  # LMDB's compile-time default
_IMAGE_FORMATS = {'png': '.png', 'jpeg': '.jpg'}


class ImageDecodeError(DataError):
    """An image that does not decode (a packer reports it and goes on)."""


class MissingKeyError(DataError):
    """A key that an LMDB lacks although its metadata or list names it."""


def image_key(split: str, key: str) -> bytes:
    """The LMDB key of image ``key`` of ``split``: ``b'<split>/<key>'``."""
    return f'{split}/{key}'.encode()


def normalize_classes(
        classes: Union[int, Sequence[str]]) -> Tuple[Optional[List[str]], int]:
    """Check class names (or a class count for unnamed classes).

    Args:
        classes (int | Sequence[str]): Class names in label order, or the
            number of classes when they have no names (identities).

    Returns:
        tuple: ``(names or None, num_classes)``.
    """
    if isinstance(classes, (int, np.integer)):
        if classes < 1:
            raise ValueError(f'classes must be positive, got {classes}')
        return None, int(classes)
    names = [str(c) for c in classes]
    if not names:
        raise ValueError('classes is empty: give the class names in label '
                         'order, or their number')
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        raise ValueError(f'duplicated class names {duplicated}')
    return names, len(names)


def decode_image(buf: bytes, source: str = 'image') -> np.ndarray:
    """Decode encoded image bytes to a BGR uint8 array (MMCV's convention).

    Args:
        buf (bytes): PNG, JPEG or any format OpenCV reads.
        source (str): What to name in the error message.

    Returns:
        np.ndarray: (H, W, 3) uint8, BGR. Grey and RGBA images become BGR.

    Raises:
        ImageDecodeError: If the bytes are not a decodable image.
    """
    img = None
    if buf:
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError(
            f'{source}: {len(buf or b"")} bytes that do not decode as an '
            'image: the data is corrupt; re-create it from a readable source')
    return img


def encode_image(image: np.ndarray,
                 image_format: str,
                 jpeg_quality: int = 95) -> bytes:
    """Encode an RGB (or grey) uint8 array as PNG or JPEG bytes.

    Args:
        image (np.ndarray): (H, W, 3) RGB or (H, W) grey, uint8.
        image_format (str): ``'png'`` (lossless) or ``'jpeg'``.
        jpeg_quality (int): JPEG quality, 0-100.

    Returns:
        bytes: The encoded image.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or
                                       (image.ndim == 3
                                        and image.shape[2] == 3)):
        raise ValueError('images must be (H, W, 3) RGB or (H, W) grey uint8, '
                         f'got {image.dtype} {image.shape}')
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = ([cv2.IMWRITE_JPEG_QUALITY,
               int(jpeg_quality)] if image_format == 'jpeg' else [])
    ok, buf = cv2.imencode(_IMAGE_FORMATS[image_format], image, params)
    if not ok:
        raise ValueError(f'OpenCV could not encode a {image.shape} image as '
                         f'{image_format}')
    return buf.tobytes()


def _describe(path: str) -> str:
    return osp.join(path, 'data.mdb') if osp.isdir(path) else path


def open_lmdb(path: str,
              readonly: bool = True,
              map_size: Optional[int] = None) -> lmdb.Environment:
    """Open an LMDB environment with checks that turn crashes into errors.

    A truncated data file makes LMDB crash the process with SIGBUS when a
    missing page is touched, so the file size is checked against the last
    page the metadata page refers to before anything is read.

    Args:
        path (str): An LMDB folder (``data.mdb`` inside) or file.
        readonly (bool): Open read-only, without locking (safe for many
            concurrent readers).
        map_size (int, optional): Map size of a writable environment.

    Returns:
        lmdb.Environment: The open environment.

    Raises:
        DataError: Missing, unreadable or truncated LMDB.
    """
    subdir = osp.isdir(path)
    if readonly and not (subdir and osp.isfile(osp.join(path, 'data.mdb'))
                         or osp.isfile(path)):
        raise DataError(f'LMDB {path!r} not found (no data.mdb): check the '
                        'data_root/path, or pack the dataset with '
                        'tools/pack_lmdb.py')
    kwargs = dict(
        readonly=True, lock=False, readahead=False,
        meminit=False) if readonly else dict(
            map_size=map_size or (1 << 28), meminit=False)
    try:
        env = lmdb.open(path, subdir=subdir, max_readers=512, **kwargs)
    except lmdb.Error as exc:
        raise DataError(f'LMDB {_describe(path)!r} cannot be opened ({exc}): '
                        'it is truncated or not an LMDB; re-pack or re-copy '
                        'it') from exc
    data_file = _describe(path)
    needed = (env.info()['last_pgno'] + 1) * env.stat()['psize']
    actual = osp.getsize(data_file)
    if actual < needed:
        env.close()
        raise DataError(
            f'LMDB {data_file!r} is truncated: {actual} bytes but '
            f'its header refers to {needed}; re-copy it or re-pack '
            'it with tools/pack_lmdb.py')
    return env


def read_lmdb_metadata(path: str) -> Dict[str, Any]:
    """Read and check the metadata entry of one of our LMDBs.

    Args:
        path (str): The LMDB folder or file.

    Returns:
        dict: The metadata (see the module docstring).

    Raises:
        DataError: Missing LMDB, missing or unreadable metadata (an original
            DMUE LMDB, or an unfinished pack), or an unknown version.
    """
    with shared_lmdb(path).begin(buffers=False) as txn:
        raw = txn.get(META_KEY)
        partial = txn.get(_STATE_KEY) is not None
    if raw is None:
        hint = ('it is an unfinished pack: finish it with '
                'tools/pack_lmdb.py ... --resume' if partial else
                'an original DMUE LMDB (raw 256x256x3 values) is read with '
                "type='OriginalLMDBDataset' and its list file, or converted "
                'with tools/pack_lmdb.py original')
        raise DataError(f'LMDB {path!r} has no {META_KEY.decode()!r} '
                        f'metadata entry: {hint}')
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise DataError(f'LMDB {path!r}: the metadata entry is not valid '
                        f'JSON ({exc}); re-pack it') from exc
    if meta.get('format') != FORMAT_NAME or meta.get(
            'version') != FORMAT_VERSION:
        raise DataError(
            f'LMDB {path!r} has format {meta.get("format")!r} version '
            f'{meta.get("version")!r}; this reader knows {FORMAT_NAME!r} '
            f'version {FORMAT_VERSION}: re-pack it with tools/pack_lmdb.py')
    return meta


# The read-only environments of this process: real path -> (pid, identity
# of the data file (device, inode, size), environment). LMDB allows one
# environment per file and process (py-lmdb refuses a second open).
_SHARED: Dict[str, Tuple[int, Optional[tuple], lmdb.Environment]] = {}

_LOCATIONS: Dict[str, Tuple[str, str]] = {}


def _locate(path: str) -> Tuple[str, str]:
    """``(real path, data file)`` of an LMDB path, memoised: ``realpath``
    costs more than an LMDB read."""
    location = _LOCATIONS.get(path)
    if location is None:
        location = (osp.realpath(path), _describe(path))
        if osp.exists(path):  # a missing LMDB may be created later
            _LOCATIONS[path] = location
    return location


def _identity(data_file: str) -> Optional[Tuple[int, int, int]]:
    try:
        stat = os.stat(data_file)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_size


def shared_lmdb(path: str) -> lmdb.Environment:
    """This process's read-only environment of ``path``, opened on first use.

    Every reader of the same LMDB in a process shares one environment. An
    environment inherited through ``fork`` (DataLoader workers) is closed in
    the child, which opens its own; so is one whose data file was replaced
    (a re-pack) or changed size (a truncation: the checks run again) since
    it was opened.

    Raises:
        DataError: Missing, unreadable or truncated LMDB.
    """
    key, data_file = _locate(path)
    identity = _identity(data_file)
    entry = _SHARED.get(key)
    if entry is not None:
        pid, old_identity, env = entry
        if pid == os.getpid() and old_identity == identity:
            return env
        del _SHARED[key]
        env.close()  # in a forked child this only unmaps the child's copy
    env = open_lmdb(path)
    _SHARED[key] = (os.getpid(), identity, env)
    return env


def close_lmdb(path: str) -> None:
    """Close this process's shared environment of ``path``, if open."""
    entry = _SHARED.pop(_locate(path)[0], None)
    if entry is not None and entry[0] == os.getpid():
        entry[2].close()


class LMDBReader:
    """Fork-safe reader of values from an LMDB.

    It holds only the path; every read goes through :func:`shared_lmdb`, so
    a reader created in the main process and copied into DataLoader workers
    or DDP ranks (by fork or pickling) reads through its own process's
    read-only environment.

    Args:
        path (str): The LMDB folder or file.
    """

    def __init__(self, path: str):
        self.path = path

    def get(self, key: bytes) -> bytes:
        """Return the value of ``key``.

        Raises:
            MissingKeyError: If the key is missing.
            DataError: If the LMDB cannot be read.
        """
        try:
            with shared_lmdb(self.path).begin(buffers=False) as txn:
                value = txn.get(key)
        except lmdb.Error as exc:
            raise DataError(
                f'LMDB {self.path!r}: reading key {key!r} failed '
                f'({exc}); the file is corrupted, re-pack it') from exc
        if value is None:
            raise MissingKeyError(
                f'LMDB {self.path!r} has no key {key!r}: the LMDB does not '
                'match its metadata/list file; re-pack it or fix the list '
                'file')
        return value


class LMDBWriter:
    """Write images and labels to our LMDB format, atomically and resumably.

    Use it as a context manager. Images go to ``<out_path>.partial`` in
    chunks of ``commit_every`` images (each chunk is one transaction, so a
    killed process keeps every committed chunk); the map size doubles
    whenever it is full. On a clean exit the metadata entry is written and
    the folder renamed to ``out_path``. On an exception the pending chunk is
    committed and the partial folder kept: a new writer with ``resume=True``
    continues it, skipping what :meth:`has` reports, and the result equals an
    uninterrupted pack.

    Args:
        out_path (str): The final LMDB folder.
        classes (int | Sequence[str]): Class names in label order, or the
            number of classes when they have no names (identities).
        image_format (str): ``'png'`` (lossless) or ``'jpeg'``.
        jpeg_quality (int): JPEG quality when encoding arrays.
        resume (bool): Continue an existing ``<out_path>.partial`` (written
            with the same classes and format); otherwise start afresh.
        extra_meta (dict, optional): JSON-serialisable dataset-level
            information stored under ``"extra"`` in the metadata; it may be
            updated through :attr:`extra_meta` before the writer closes.
        overwrite (bool): Replace an existing ``out_path`` when done.
        commit_every (int): Images per transaction.
        map_size (int): Initial map size in bytes (it grows as needed).

    Example:
        >>> with LMDBWriter('data/rafdb/rafdb.lmdb', RAFDB_CLASSES) as w:
        ...     for key, img, label in samples:
        ...         if not w.has('train', key):
        ...             w.add('train', key, img, label)
    """

    def __init__(self,
                 out_path: str,
                 classes: Union[int, Sequence[str]],
                 image_format: str = 'png',
                 jpeg_quality: int = 95,
                 resume: bool = True,
                 extra_meta: Optional[Dict[str, Any]] = None,
                 overwrite: bool = False,
                 commit_every: int = 256,
                 map_size: int = 1 << 28):
        if image_format not in _IMAGE_FORMATS:
            raise ValueError(f'image_format must be one of '
                             f'{sorted(_IMAGE_FORMATS)}, got {image_format!r}')
        if not 0 <= jpeg_quality <= 100:
            raise ValueError(f'jpeg_quality must be in 0-100, got '
                             f'{jpeg_quality}')
        if commit_every < 1:
            raise ValueError(f'commit_every must be >= 1, got {commit_every}')
        self.out_path = osp.normpath(out_path)
        self.tmp_path = self.out_path + '.partial'
        if osp.exists(self.out_path) and not overwrite:
            raise DataError(f'{self.out_path!r} already exists: remove it or '
                            'pass overwrite=True (--overwrite)')
        self.classes, self.num_classes = normalize_classes(classes)
        self.image_format = image_format
        self.jpeg_quality = int(jpeg_quality)
        self.extra_meta = dict(extra_meta or {})
        self.overwrite = overwrite
        self.commit_every = commit_every
        self.resumed = 0
        self._settings = dict(
            format=FORMAT_NAME,
            version=FORMAT_VERSION,
            classes=self.classes,
            num_classes=self.num_classes,
            image_format=image_format,
            jpeg_quality=self.jpeg_quality)
        self._pending: Dict[bytes, bytes] = {}
        self._pending_images = 0
        self._closed = False
        if osp.exists(self.tmp_path) and not resume:
            shutil.rmtree(self.tmp_path)
        os.makedirs(self.tmp_path, exist_ok=True)
        close_lmdb(self.tmp_path)  # a reader's handle would block the open
        self._env = open_lmdb(self.tmp_path, readonly=False, map_size=map_size)
        self._seq = self._load_state()

    # ------------------------------------------------------------------
    def _load_state(self) -> int:
        with self._env.begin(buffers=False) as txn:
            raw = txn.get(_STATE_KEY)
        if raw is None:
            return 0
        state = json.loads(raw)
        settings = {k: state.get(k) for k in self._settings}
        if settings != self._settings:
            changed = sorted(k for k in settings
                             if settings[k] != self._settings[k])
            self._env.close()
            raise DataError(
                f'the unfinished pack {self.tmp_path!r} was started with '
                f'other settings ({", ".join(changed)} differ): delete it, '
                'or pack without resume to start afresh')
        self.resumed = state['next_seq']
        return state['next_seq']

    def __enter__(self) -> 'LMDBWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    def __len__(self) -> int:
        """Number of images written so far (resumed ones included)."""
        return self._seq

    def has(self, split: str, key: str) -> bool:
        """Whether image ``key`` of ``split`` is already written."""
        full = image_key(split, key)
        if full in self._pending:
            return True
        with self._env.begin() as txn:
            return txn.get(full) is not None

    def add(self,
            split: str,
            key: str,
            image: Union[np.ndarray, bytes],
            label: int,
            extra: Optional[Dict[str, Any]] = None) -> None:
        """Add one image.

        Args:
            split (str): Split name, e.g. ``'train'`` (no ``/``).
            key (str): Unique key within the split (e.g. a relative path).
            image (np.ndarray | bytes): (H, W, 3) RGB or (H, W) grey uint8,
                encoded with ``image_format``; or already encoded bytes,
                stored as they are once they decode.
            label (int): Class index in ``[0, num_classes)``.
            extra (dict, optional): JSON-serialisable per-sample values
                (e.g. vote counts), stored per split in the metadata.

        Raises:
            ImageDecodeError: Encoded bytes that do not decode.
            DataError: Bad split or key, duplicated key, label outside the
                classes.
        """
        if self._closed:
            raise RuntimeError('the writer is closed')
        if not split or '/' in split or split.startswith(_RESERVED):
            raise DataError(f'bad split name {split!r}: use a non-empty name '
                            f'without "/" that does not start with '
                            f'{_RESERVED!r}')
        full = image_key(split, key)
        if not key or len(full) > _MAX_KEY_BYTES:
            raise DataError(f'bad key {key!r} of split {split!r}: it must be '
                            f'non-empty and "{split}/<key>" at most '
                            f'{_MAX_KEY_BYTES} bytes in UTF-8')
        if not (isinstance(label, (int, np.integer))
                and 0 <= label < self.num_classes):
            raise DataError(f'label {label!r} of {split}/{key} is outside the '
                            f'{self.num_classes} classes (0-'
                            f'{self.num_classes - 1}): fix the annotation or '
                            'the class list')
        if self.has(split, key):
            raise DataError(f'duplicated key {split}/{key}: keys must be '
                            'unique within a split')
        if isinstance(image, (bytes, bytearray, memoryview)):
            buf = bytes(image)
            height, width = decode_image(buf, f'{split}/{key}').shape[:2]
        else:
            buf = encode_image(image, self.image_format, self.jpeg_quality)
            height, width = np.asarray(image).shape[:2]
        record = dict(
            split=split,
            key=key,
            label=int(label),
            size=[int(height), int(width)],
            extra=_to_json(extra or {}))
        self._pending[full] = buf
        self._pending[_RECORD_PREFIX + f'{self._seq:012d}'.encode()] = \
            json.dumps(record).encode()
        self._seq += 1
        self._pending_images += 1
        if self._pending_images >= self.commit_every:
            self.commit()

    def commit(
        self,
        extra_puts: Optional[Dict[bytes, bytes]] = None,
        deletes: Sequence[bytes] = ()
    ) -> None:
        """Write the pending chunk in one transaction, growing the map size
        when it is full."""
        puts = dict(self._pending)
        puts[_STATE_KEY] = json.dumps(
            dict(self._settings, next_seq=self._seq)).encode()
        puts.update(extra_puts or {})
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for k, v in puts.items():
                        txn.put(k, v)
                    for k in deletes:
                        txn.delete(k)
                break
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()['map_size'] * 2)
        self._pending.clear()
        self._pending_images = 0

    def _collect_metadata(self) -> Tuple[Dict[str, Any], List[bytes]]:
        splits: Dict[str, Dict[str, Any]] = {}
        record_keys = []
        with self._env.begin(buffers=False) as txn:
            cursor = txn.cursor()
            if cursor.set_range(_RECORD_PREFIX):
                for k, v in cursor:
                    if not k.startswith(_RECORD_PREFIX):
                        break
                    record_keys.append(k)
                    _append_record(splits, json.loads(v), self.num_classes)
        for info in splits.values():
            _finish_split(info)
        meta = dict(self._settings, splits=splits, extra=self.extra_meta)
        meta.pop('jpeg_quality')
        if self.image_format == 'jpeg':
            meta['jpeg_quality'] = self.jpeg_quality
        return meta, record_keys

    def close(self) -> Dict[str, Any]:
        """Finish: write the metadata and rename to ``out_path``.

        Returns:
            dict: The metadata written.
        """
        if self._closed:
            raise RuntimeError('the writer is already closed')
        self.commit()
        meta, record_keys = self._collect_metadata()
        self.commit(
            extra_puts={META_KEY: json.dumps(_to_json(meta)).encode()},
            deletes=[_STATE_KEY] + record_keys)
        self._env.sync(True)
        self._env.close()
        self._closed = True
        if osp.exists(self.out_path) and self.overwrite:
            shutil.rmtree(self.out_path)
        os.replace(self.tmp_path, self.out_path)
        return meta

    def abort(self) -> None:
        """Commit what is pending and keep the partial LMDB for a resume."""
        if self._closed:
            return
        try:
            self.commit()
        finally:
            self._env.close()
            self._closed = True


def _to_json(value: Any) -> Any:
    """Convert numpy values inside dicts/lists to JSON-serialisable ones."""
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _append_record(splits: Dict[str, Dict[str, Any]], record: Dict[str, Any],
                   num_classes: int) -> None:
    info = splits.setdefault(
        record['split'],
        dict(
            keys=[],
            labels=[],
            class_counts=[0] * num_classes,
            image_sizes={},
            extras={}))
    index = len(info['keys'])
    info['keys'].append(record['key'])
    info['labels'].append(record['label'])
    info['class_counts'][record['label']] += 1
    size = 'x'.join(map(str, record['size']))
    info['image_sizes'][size] = info['image_sizes'].get(size, 0) + 1
    for name, value in record['extra'].items():
        info['extras'].setdefault(name, [None] * index)
    for name, values in info['extras'].items():
        values.append(record['extra'].get(name))


def _finish_split(info: Dict[str, Any]) -> None:
    info['count'] = len(info['keys'])
    sizes = list(info['image_sizes'])
    info['image_size'] = ([int(v) for v in sizes[0].split('x')]
                          if len(sizes) == 1 else None)
