"""ExpressionLMDBDataset, the benchmark classes and the original-format
reader, built from config dicts."""
import json
import shutil

import cv2
import lmdb
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from torch.utils.data import DataLoader

from mmpretrain.registry import DATASETS

from dmue_mm.datasets import (AFFECTNET7_CLASSES, AFFECTNET8_CLASSES,
                              FERPLUS_CLASSES, RAFDB_CLASSES, SFEW_CLASSES,
                              ImageDecodeError, LMDBWriter, MissingKeyError,
                              close_lmdb)
from dmue_mm.datasets.lmdb_io import META_KEY
from dmue_mm.utils import DataError
from .fakes import CLASSES, make_original, write_lmdb

PACK = [dict(type='PackInputs')]


def build(**kwargs):
    """Build a dataset; without serialisation unless asked, since MMEngine's
    serialisation runs a full gc.collect() (~0.4 s in a test process)."""
    kwargs.setdefault('type', 'ExpressionLMDBDataset')
    kwargs.setdefault('pipeline', PACK)
    kwargs.setdefault('serialize_data', False)
    return DATASETS.build(kwargs)


def as_bgr_hwc(inputs: torch.Tensor) -> np.ndarray:
    return inputs.permute(1, 2, 0).numpy()


class TestExpressionLMDBDataset:

    def test_reads_images_labels_and_classes(self, small_lmdb):
        path, written = small_lmdb
        ds = build(data_root=path, split='test')
        assert len(ds) == 8 and ds.CLASSES == CLASSES
        for index, (key, label, rgb) in enumerate(written['test']):
            item = ds[index]
            np.testing.assert_array_equal(
                as_bgr_hwc(item['inputs']),
                cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            sample = item['data_samples']
            assert int(sample.gt_label) == label
            assert sample.img_path == f'test/{key}'
            assert sample.ori_shape == (20, 20)

    def test_labels_without_decoding(self, small_lmdb, monkeypatch):
        path, written = small_lmdb
        ds = build(data_root=path, split='train')
        monkeypatch.setattr(type(ds), 'decode', None)  # would fail if used
        np.testing.assert_array_equal(ds.get_gt_labels(),
                                      [lb for _, lb, _ in written['train']])

    def test_config_classes_checked(self, small_lmdb):
        path = small_lmdb[0]
        assert build(data_root=path, classes=list(CLASSES)).CLASSES == CLASSES
        with pytest.raises(DataError, match='another order'):
            build(data_root=path, classes=CLASSES[::-1])
        with pytest.raises(DataError, match=r"small.lmdb' \(different names"):
            build(data_root=path, classes=['a', 'b', 'c', 'd'])

    def test_unknown_split(self, small_lmdb):
        with pytest.raises(
                DataError, match=r"no split 'val'.*\['test', "
                r"'train'\]"):
            build(data_root=small_lmdb[0], split='val')

    def test_missing_lmdb(self, tmp_path):
        with pytest.raises(DataError, match='not found'):
            build(data_root=str(tmp_path / 'none.lmdb'))

    def test_unnamed_classes(self, tmp_path):
        path = str(tmp_path / 'ids.lmdb')
        write_lmdb(path, classes=3, splits={'train': 1})
        assert build(data_root=path).CLASSES == ('0', '1', '2')
        assert build(
            data_root=path, classes=['x', 'y', 'z']).CLASSES == ('x', 'y', 'z')
        with pytest.raises(DataError, match='gives 2 classes'):
            build(data_root=path, classes=['x', 'y'])

    def test_label_outside_classes(self, tmp_path):
        path = str(tmp_path / 'bad_label.lmdb')
        write_lmdb(path, splits={'train': 1})
        env = lmdb.open(path)
        with env.begin(write=True) as txn:
            meta = json.loads(txn.get(META_KEY))
            meta['splits']['train']['labels'][2] = 9
            txn.put(META_KEY, json.dumps(meta).encode())
        env.close()
        with pytest.raises(
                DataError,
                match=r'label 9 of train/c2/002.png '
                'is outside the 4 classes'):
            build(data_root=path)

    @pytest.fixture
    def damaged(self, tmp_path, small_lmdb):
        """A copy of the small LMDB whose first test image is missing and
        second one is not an image."""
        path = str(tmp_path / 'damaged.lmdb')
        shutil.copytree(small_lmdb[0], path)
        keys = [f'test/{k}'.encode() for k, _, _ in small_lmdb[1]['test']]
        close_lmdb(path)
        env = lmdb.open(path)
        with env.begin(write=True) as txn:
            txn.delete(keys[0])
            txn.put(keys[1], b'not an image')
        env.close()
        return build(data_root=path, split='test')

    @pytest.mark.parametrize('index,error,match', [
        (0, MissingKeyError, "damaged.lmdb' has no key b'test/c0/000.png'"),
        (1, ImageDecodeError, 'damaged.lmdb::test/c0/001.png: 12 bytes'),
    ])
    def test_missing_key_and_undecodable_image(self, damaged, index, error,
                                               match):
        with pytest.raises(error, match=match):
            damaged[index]

    def test_dataloader_workers(self, small_lmdb):
        path, written = small_lmdb
        ds = build(data_root=path, split='train', serialize_data=True)
        ds[0]  # the main process opens the LMDB before the workers fork
        loader = DataLoader(
            ds,
            batch_size=4,
            num_workers=2,
            collate_fn=pseudo_collate,
            multiprocessing_context='fork')
        seen = [x for batch in loader for x in batch['inputs']]
        assert len(seen) == len(written['train'])
        for inputs, (_, _, rgb) in zip(seen, written['train']):
            np.testing.assert_array_equal(
                as_bgr_hwc(inputs), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def test_score_extra(self, tmp_path):
        path = str(tmp_path / 'votes.lmdb')
        with LMDBWriter(path, 3) as writer:
            img = np.zeros((4, 4, 3), np.uint8)
            writer.add('test', 'a', img, 0, extra={'votes': [3, 1, 0]})
            writer.add('test', 'b', img, 2, extra={'votes': [0, 1, 1]})
            writer.add('train', 'c', img, 1, extra={'other': 1})
        with pytest.raises(
                DataError, match="split 'train' does not store "
                "'votes'"):
            build(data_root=path, split='train', score_extra='votes')
        ds = build(data_root=path, split='test', score_extra='votes')
        sample = ds[0]['data_samples']
        assert sample.gt_score.dtype == torch.float32
        # votes / total, one float32 rounding each (<= eps/2): within
        # assert_close's float32 default (rtol 1.3e-6 = 11 eps)
        torch.testing.assert_close(sample.gt_score,
                                   torch.tensor([0.75, 0.25, 0.0]))
        torch.testing.assert_close(ds[1]['data_samples'].gt_score,
                                   torch.tensor([0.0, 0.5, 0.5]))


class TestBenchmarkDatasets:

    @pytest.mark.parametrize('name,classes',
                             [('RAFDB', RAFDB_CLASSES),
                              ('AffectNet7', AFFECTNET7_CLASSES),
                              ('AffectNet8', AFFECTNET8_CLASSES),
                              ('SFEW', SFEW_CLASSES)])
    def test_canonical_classes(self, tmp_path, name, classes):
        path = str(tmp_path / 'b.lmdb')
        write_lmdb(path, classes=classes, splits={'train': 1})
        ds = build(type=name, data_root=path)
        assert ds.CLASSES == classes and len(ds) == len(classes)

    def test_wrong_classes_refused(self, small_lmdb):
        with pytest.raises(
                DataError,
                match=r"\['Surprise'.* of the config "
                r"differ from \['angry'"):
            build(type='RAFDB', data_root=small_lmdb[0])

    def test_ferplus_votes(self, tmp_path):
        path = str(tmp_path / 'fer.lmdb')
        votes = [6, 1, 0, 0, 1, 0, 0, 2]
        with LMDBWriter(path, FERPLUS_CLASSES) as writer:
            writer.add(
                'test',
                'fer0.png',
                np.zeros((48, 48), np.uint8),
                0,
                extra={
                    'votes': votes,
                    'votes_other': [0, 0]
                })
        sample = build(
            type='FERPlus', data_root=path, split='test')[0]['data_samples']
        # the same float32 division on both sides
        torch.testing.assert_close(sample.gt_score, torch.tensor(votes) / 10.0)
        hard = build(
            type='FERPlus', data_root=path, split='test',
            score_extra=None)[0]['data_samples']
        assert 'gt_score' not in hard and int(hard.gt_label) == 0


class TestOriginalLMDBDataset:

    @pytest.fixture(scope='class')
    def original(self, tmp_path_factory):
        return make_original(str(tmp_path_factory.mktemp('orig')))

    def build(self, original, **kwargs):
        _, path, list_path = original
        return build(
            type='OriginalLMDBDataset',
            data_root=path,
            ann_file=list_path,
            **kwargs)

    @pytest.mark.parametrize('split', ['train', 'test'])
    def test_byte_identical(self, original, split):
        expected = original[0][split]
        ds = self.build(original, split=split)
        assert ds.CLASSES == tuple(str(i) for i in range(8))
        assert len(ds) == len(expected)
        for index in range(len(ds)):
            item = ds[index]
            key = item['data_samples'].img_path.split('/', 1)[1]
            label, bgr = expected[key]
            assert int(item['data_samples'].gt_label) == label
            assert as_bgr_hwc(item['inputs']).tobytes() == bgr.tobytes()

    def test_named_classes(self, original):
        names = list(AFFECTNET8_CLASSES)
        assert self.build(original, classes=names).CLASSES == tuple(names)
        with pytest.raises(
                DataError,
                match=r'lb2.txt:\d+: label 7 .* '
                r'outside the 7 classes'):
            self.build(original, classes=names[:7])

    def test_bad_list_lines(self, tmp_path, original):
        bad = tmp_path / 'bad.txt'
        bad.write_text('train_a/b.jpg 1\n\ntrain_c.jpg x\n')
        with pytest.raises(DataError, match=r'bad.txt:3: expected'):
            self.build((None, original[1], str(bad)))
        bad.write_text('nounderscore.jpg 1\n')
        with pytest.raises(DataError, match=r'bad.txt:1: .*"<split>_"'):
            self.build((None, original[1], str(bad)))
        with pytest.raises(DataError, match=r"no line for split 'val'"):
            self.build(original, split='val')
        with pytest.raises(DataError, match='list file .* not found'):
            self.build((None, original[1], str(tmp_path / 'none.txt')))

    def test_bad_values(self, original):
        with pytest.raises(
                ImageDecodeError,
                match=r'196608 bytes, but a raw '
                r'\(128, 128, 3\)'):
            self.build(original, image_shape=(128, 128, 3))[0]
