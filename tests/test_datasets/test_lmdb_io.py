"""LMDBWriter / LMDBReader: the format, atomic and resumable writing, map
growth, and the one-line errors on bad LMDBs."""
import os
import os.path as osp
import pickle

import cv2
import lmdb
import numpy as np
import pytest

from dmue_mm.datasets import (ImageDecodeError, LMDBReader, LMDBWriter,
                              decode_image, encode_image, open_lmdb,
                              read_lmdb_metadata, shared_lmdb)
from dmue_mm.datasets.lmdb_io import META_KEY, image_key
from dmue_mm.utils import DataError
from .fakes import CLASSES, lmdb_entries, write_lmdb


def bgr(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


class TestFormat:

    def test_png_round_trip_is_pixel_exact(self, small_lmdb):
        path, written = small_lmdb
        reader = LMDBReader(path)
        for split, samples in written.items():
            for key, _, rgb in samples:
                img = decode_image(reader.get(image_key(split, key)))
                np.testing.assert_array_equal(img, bgr(rgb))

    def test_metadata(self, small_lmdb):
        path, written = small_lmdb
        meta = read_lmdb_metadata(path)
        assert meta['format'] == 'dmue-mm-lmdb' and meta['version'] == 1
        assert meta['classes'] == list(CLASSES)
        assert meta['num_classes'] == 4 and meta['image_format'] == 'png'
        assert list(meta['splits']) == ['train', 'test']
        train = meta['splits']['train']
        assert train['keys'] == [k for k, _, _ in written['train']]
        assert train['labels'] == [lb for _, lb, _ in written['train']]
        assert train['count'] == 12 and train['class_counts'] == [3] * 4
        assert train['image_size'] == [20, 20]
        assert train['image_sizes'] == {'20x20': 12}
        assert train['extras']['index'] == list(range(12))
        # nothing but the images and the metadata is left
        assert len(lmdb_entries(path)) == 12 + 8 + 1

    def test_encoded_bytes_are_stored_as_given(self, tmp_path):
        rgb = np.random.default_rng(0).integers(0, 256, (30, 20, 3), np.uint8)
        jpeg = encode_image(rgb, 'jpeg', 80)
        grey = rgb[..., 0]
        out = str(tmp_path / 'x.lmdb')
        with LMDBWriter(out, 2, image_format='jpeg') as writer:
            writer.add('train', 'a.jpg', jpeg, 1)
            writer.add('train', 'grey', grey, 0)
        reader = LMDBReader(out)
        assert reader.get(b'train/a.jpg') == jpeg
        meta = read_lmdb_metadata(out)
        assert meta['classes'] is None and meta['jpeg_quality'] == 95
        assert meta['splits']['train']['image_sizes'] == {'30x20': 2}
        assert decode_image(reader.get(b'train/grey')).shape == (30, 20, 3)

    def test_map_size_grows(self, tmp_path):
        out = str(tmp_path / 'grow.lmdb')
        # 24 noisy 64x64 PNGs (~10 kB each) into a 64 kB initial map
        write_lmdb(
            out,
            splits={'train': 6},
            size=64,
            map_size=1 << 16,
            commit_every=5)
        env = open_lmdb(out)
        assert env.info()['map_size'] > 1 << 16
        env.close()
        assert read_lmdb_metadata(out)['splits']['train']['count'] == 24


def interrupted(out: str) -> str:
    """Start a pack of one image, then fail: leaves ``<out>.partial``."""
    with pytest.raises(ZeroDivisionError):
        with LMDBWriter(out, CLASSES) as writer:
            writer.add('train', 'old', np.zeros((4, 4, 3), np.uint8), 0)
            1 / 0
    return out


class TestAtomicResume:

    def test_output_appears_only_when_complete(self, tmp_path):
        out = str(tmp_path / 'a.lmdb')
        with LMDBWriter(out, CLASSES, commit_every=1) as writer:
            writer.add('train', 'k', np.zeros((4, 4, 3), np.uint8), 0)
            assert not osp.exists(out) and osp.isdir(out + '.partial')
        assert osp.isdir(out) and not osp.exists(out + '.partial')

    def test_exception_then_resume_equals_uninterrupted(self, tmp_path):
        reference = str(tmp_path / 'ref.lmdb')
        write_lmdb(reference, commit_every=4)
        out = str(tmp_path / 'out.lmdb')
        imgs = {}

        class Stop(Exception):
            pass

        samples = write_lmdb(str(tmp_path / 'tmp.lmdb'))  # same content
        order = [(s, k, lb, img) for s, items in samples.items()
                 for k, lb, img in items]
        with pytest.raises(Stop):
            with LMDBWriter(out, CLASSES, commit_every=4) as writer:
                for n, (split, key, label, img) in enumerate(order):
                    if n == 10:
                        raise Stop
                    writer.add(
                        split, key, img, label, extra={'index': int(key[3:6])})
        assert not osp.exists(out) and osp.isdir(out + '.partial')
        with LMDBWriter(out, CLASSES, commit_every=4) as writer:
            assert writer.resumed == 10 and len(writer) == 10
            for split, key, label, img in order:
                if not writer.has(split, key):
                    imgs[key] = img
                    writer.add(
                        split, key, img, label, extra={'index': int(key[3:6])})
        assert len(imgs) == len(order) - 10
        assert lmdb_entries(out) == lmdb_entries(reference)

    def test_no_resume_starts_afresh(self, tmp_path):
        out = interrupted(str(tmp_path / 'b.lmdb'))
        with LMDBWriter(out, CLASSES, resume=False) as writer:
            assert not writer.has('train', 'old')

    def test_resume_with_other_settings_is_refused(self, tmp_path):
        out = interrupted(str(tmp_path / 'c.lmdb'))
        with pytest.raises(DataError, match='image_format'):
            LMDBWriter(out, CLASSES, image_format='jpeg')

    def test_existing_output(self, tmp_path, small_lmdb):
        out = str(tmp_path / 'd.lmdb')
        write_lmdb(out, splits={'train': 1})
        with pytest.raises(DataError, match='already exists'):
            LMDBWriter(out, CLASSES)
        write_lmdb(out, splits={'test': 1}, overwrite=True)
        assert list(read_lmdb_metadata(out)['splits']) == ['test']


class TestWriterErrors:

    @pytest.fixture
    def writer(self, tmp_path):
        with LMDBWriter(str(tmp_path / 'e.lmdb'), CLASSES) as writer:
            writer.add('train', 'ok', np.zeros((4, 4, 3), np.uint8), 0)
            yield writer

    @pytest.mark.parametrize('label', [4, -1, 1.0])
    def test_label_outside_classes(self, writer, label):
        with pytest.raises(DataError, match=r'outside the 4 classes'):
            writer.add('train', 'x', np.zeros((4, 4, 3), np.uint8), label)

    def test_bad_bytes(self, writer):
        with pytest.raises(ImageDecodeError, match='train/x: 5 bytes'):
            writer.add('train', 'x', b'abcde', 0)

    def test_duplicate_and_bad_names(self, writer):
        img = np.zeros((4, 4, 3), np.uint8)
        with pytest.raises(DataError, match='duplicated key train/ok'):
            writer.add('train', 'ok', img, 0)
        with pytest.raises(DataError, match='bad split'):
            writer.add('a/b', 'x', img, 0)
        with pytest.raises(DataError, match='bad key'):
            writer.add('train', 'x' * 600, img, 0)
        with pytest.raises(ValueError, match='uint8'):
            writer.add('train', 'f', img.astype(np.float32), 0)


class TestReaderErrors:

    def test_missing_lmdb(self, tmp_path):
        with pytest.raises(DataError, match=r"LMDB '.*nope.lmdb' not found"):
            read_lmdb_metadata(str(tmp_path / 'nope.lmdb'))

    def test_truncated_lmdb(self, tmp_path):
        out = str(tmp_path / 't.lmdb')
        write_lmdb(out, size=48)
        read_lmdb_metadata(out)  # opened before the truncation
        data = osp.join(out, 'data.mdb')
        os.truncate(data, osp.getsize(data) // 2)
        # without the check, LMDB crashes the process with SIGBUS here
        with pytest.raises(DataError, match='data.mdb.* is truncated'):
            read_lmdb_metadata(out)
        os.truncate(data, 100)
        with pytest.raises(DataError, match='truncated or not an LMDB'):
            read_lmdb_metadata(out)

    def test_no_metadata(self, tmp_path):
        out = str(tmp_path / 'raw')
        env = lmdb.open(out)
        with env.begin(write=True) as txn:
            txn.put(b'train_a/b.jpg', bytes(12))
        env.close()
        with pytest.raises(DataError, match='OriginalLMDBDataset'):
            read_lmdb_metadata(out)

    def test_unfinished_pack(self, tmp_path):
        out = interrupted(str(tmp_path / 'u.lmdb'))
        with pytest.raises(DataError, match='--resume'):
            read_lmdb_metadata(out + '.partial')

    def test_missing_key(self, small_lmdb):
        with pytest.raises(DataError, match="has no key b'train/nope'"):
            LMDBReader(small_lmdb[0]).get(b'train/nope')


class TestReaderProcesses:

    def test_readers_share_one_environment(self, small_lmdb):
        first, second = LMDBReader(small_lmdb[0]), LMDBReader(small_lmdb[0])
        assert first.get(META_KEY) == second.get(META_KEY)
        clone = pickle.loads(pickle.dumps(first))
        assert clone.get(META_KEY) == first.get(META_KEY)
        assert shared_lmdb(small_lmdb[0]) is shared_lmdb(small_lmdb[0])

    def test_forked_child_opens_its_own_environment(self, small_lmdb):
        reader = LMDBReader(small_lmdb[0])
        value = reader.get(META_KEY)
        parent_env = shared_lmdb(small_lmdb[0])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: must not reuse the parent's environment
            try:
                ok = (
                    reader.get(META_KEY) == value
                    and shared_lmdb(small_lmdb[0]) is not parent_env)
                os.write(write, b'1' if ok else b'0')
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(read, 1) == b'1'
        assert shared_lmdb(small_lmdb[0]) is parent_env
        assert reader.get(META_KEY) == value

    def test_replaced_lmdb_is_reopened(self, tmp_path):
        out = str(tmp_path / 'r.lmdb')
        write_lmdb(out, splits={'train': 1})
        assert list(read_lmdb_metadata(out)['splits']) == ['train']
        write_lmdb(out, splits={'test': 1}, overwrite=True)
        assert list(read_lmdb_metadata(out)['splits']) == ['test']
