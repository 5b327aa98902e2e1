"""The packers: each official-layout fake packs and reads back with the
right images, labels and class names; unreadable images are reported;
an interrupted pack resumes to the same LMDB."""
import os.path as osp

import numpy as np
import pytest

from mmpretrain.registry import DATASETS

from dmue_mm.datasets import (AFFECTNET7_CLASSES, AFFECTNET8_CLASSES,
                              FERPLUS_CLASSES, RAFDB_CLASSES, SFEW_CLASSES,
                              LMDBReader, LMDBWriter, read_lmdb_metadata)
from dmue_mm.datasets.packers import (affectnet_layout, ferplus_label,
                                      ferplus_layout, folder_layout,
                                      list_layout, original_layout,
                                      pack_layout, rafdb_layout)
from dmue_mm.utils import DataError
from .fakes import (lmdb_entries, make_affectnet, make_ferplus,
                    make_folder_tree, make_list_layout, make_original,
                    make_rafdb)


def read_back(path, dataset_type='ExpressionLMDBDataset', **kwargs):
    """``{split: {key: (label, BGR image)}}`` and the classes, read through
    the registered dataset."""
    found, classes = {}, None
    for split in read_lmdb_metadata(path)['splits']:
        ds = DATASETS.build(
            dict(
                type=dataset_type,
                data_root=path,
                split=split,
                pipeline=[dict(type='PackInputs')],
                serialize_data=False,
                **kwargs))
        classes = ds.CLASSES
        found[split] = {}
        for item in ds:
            sample = item['data_samples']
            key = sample.img_path.split('/', 1)[1]
            found[split][key] = (int(sample.gt_label),
                                 item['inputs'].permute(1, 2, 0).numpy())
    return found, classes


def assert_same(found, expected):
    assert {
        s: sorted(v)
        for s, v in found.items()
    } == {
        s: sorted(v)
        for s, v in expected.items() if v
    }
    for split, samples in expected.items():
        for key, (label, image) in samples.items():
            assert found[split][key][0] == label, (split, key)
            np.testing.assert_array_equal(found[split][key][1], image)


def report_lines(summary):
    with open(summary.report_path) as f:
        return [line.rstrip('\n').split('\t') for line in f]


def pack(layout, tmp_path, name='out.lmdb', **kwargs):
    kwargs.setdefault('progress', False)
    return pack_layout(layout, str(tmp_path / name), **kwargs)


class TestRAFDB:

    def test_pack_and_read_back(self, tmp_path):
        expected = make_rafdb(str(tmp_path / 'raf'))
        summary = pack(rafdb_layout(str(tmp_path / 'raf')), tmp_path)
        assert summary.counts == {'train': 14, 'test': 7}
        assert summary.unreadable == 0 and report_lines(summary) == []
        found, classes = read_back(summary.out_path, 'RAFDB')
        assert classes == RAFDB_CLASSES
        assert_same(found, expected)

    def test_jpeg_files_are_stored_as_they_are(self, tmp_path):
        make_rafdb(str(tmp_path / 'raf'))
        summary = pack(
            rafdb_layout(str(tmp_path / 'raf' / 'basic')),
            tmp_path,
            image_format='jpeg')
        source = tmp_path / 'raf/basic/Image/aligned/train_00001_aligned.jpg'
        assert LMDBReader(summary.out_path).get(
            b'train/train_00001.jpg') == source.read_bytes()

    def test_bad_label(self, tmp_path):
        make_rafdb(str(tmp_path / 'raf'))
        label_file = tmp_path / 'raf/basic/EmoLabel/list_patition_label.txt'
        lines = label_file.read_text().splitlines()
        lines[2] = 'train_00003.jpg 8'
        label_file.write_text('\n'.join(lines) + '\n')
        with pytest.raises(
                DataError,
                match=r'list_patition_label.txt:3: '
                r'expected "train_\*\|test_\* <1-7>"'):
            rafdb_layout(str(tmp_path / 'raf'))


class TestAffectNet:

    @pytest.mark.parametrize('num_classes', [7, 8])
    def test_pack_and_read_back(self, tmp_path, num_classes):
        expected, _ = make_affectnet(str(tmp_path / 'aff'))
        expected = {
            split: {
                k: v
                for k, v in samples.items() if v[0] < num_classes
            }
            for split, samples in expected.items()
        }
        summary = pack(
            affectnet_layout(str(tmp_path / 'aff'), num_classes), tmp_path)
        found, classes = read_back(summary.out_path, f'AffectNet{num_classes}')
        assert classes == (AFFECTNET7_CLASSES,
                           AFFECTNET8_CLASSES)[num_classes - 7]
        assert_same(found, expected)
        dropped = {'8 None': 1, '9 Uncertain': 1, '10 No-Face': 1}
        if num_classes == 7:
            dropped['7 Contempt'] = 1
        assert summary.dropped == {'train': dropped, 'test': dropped}
        extra = read_lmdb_metadata(summary.out_path)['extra']
        assert extra['dropped'] == summary.dropped
        reasons = dict(report_lines(summary))
        assert summary.unreadable == 2 and len(reasons) == 2
        image_dir = str(tmp_path / 'aff' / 'Manually_Annotated_Images')
        assert reasons[osp.join(image_dir, '9', 'missing.jpg')] == \
            'file not found'
        assert 'do not decode' in reasons[osp.join(image_dir, '9',
                                                   'corrupt.jpg')]

    def test_bad_expression(self, tmp_path):
        make_affectnet(str(tmp_path / 'aff'))
        path = tmp_path / 'aff/Manually_Annotated_file_lists/training.csv'
        path.write_text(path.read_text() + 'x/y.jpg,0,0,1,1,,11,0,0\n')
        with pytest.raises(
                DataError,
                match=r'training.csv:15: expression '
                r'code 11 is outside 0-10'):
            affectnet_layout(str(tmp_path / 'aff'))


class TestFERPlus:

    @pytest.mark.parametrize('votes,result', [
        ([0, 7, 1, 0, 0, 0, 0, 2, 0, 0], 1),
        ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], 'tie'),
        ([4, 0, 0, 0, 0, 0, 0, 0, 4, 0], 'unknown/NF majority'),
        ([1, 0, 0, 0, 0, 0, 0, 0, 0, 9], 'unknown/NF majority'),
        ([0] * 10, 'unknown/NF majority'),
    ])
    def test_majority_rule(self, votes, result):
        assert ferplus_label(votes) == result

    def test_pack_and_read_back(self, tmp_path):
        expected, votes_of, dropped = make_ferplus(str(tmp_path))
        layout = ferplus_layout(
            str(tmp_path / 'fer2013.csv'), str(tmp_path / 'fer2013new.csv'))
        summary = pack(layout, tmp_path)
        assert summary.dropped == dropped
        assert summary.counts == {'train': 4, 'val': 8, 'test': 8}
        (source, reason), = report_lines(summary)
        assert source.endswith('fer2013.csv:26') and '2304' in reason
        found, classes = read_back(
            summary.out_path, 'FERPlus', score_extra=None)
        assert classes == FERPLUS_CLASSES
        assert_same(found, expected)
        for item in DATASETS.build(
                dict(
                    type='FERPlus',
                    data_root=summary.out_path,
                    split='val',
                    pipeline=[dict(type='PackInputs')])):
            sample = item['data_samples']
            votes = np.asarray(votes_of[sample.img_path.split('/')[1]][:8])
            # a float32 quotient of exact integers vs float64: one rounding,
            # <= 2**-24 relative; rtol 1e-6 is 16 times that
            np.testing.assert_allclose(
                sample.gt_score.numpy(), votes / votes.sum(), rtol=1e-6)

    def test_misaligned_files(self, tmp_path):
        make_ferplus(str(tmp_path))
        new = tmp_path / 'fer2013new.csv'
        lines = new.read_text().splitlines()
        new.write_text('\n'.join(lines[:1] + lines[2:]) + '\n')
        with pytest.raises(DataError, match='has 24 rows but .* has 25'):
            ferplus_layout(str(tmp_path / 'fer2013.csv'), str(new))
        new.write_text('Usage,name\n')
        with pytest.raises(
                DataError, match=r"header lacks the columns "
                r"\['Image name'"):
            ferplus_layout(str(tmp_path / 'fer2013.csv'), str(new))


class TestFolderListOriginal:

    def test_sfew_folder(self, tmp_path):
        expected = make_folder_tree(str(tmp_path / 'sfew'))
        layout = folder_layout(
            str(tmp_path / 'sfew'), {
                'Train': 'train',
                'Val': 'test'
            })
        summary = pack(layout, tmp_path)
        found, classes = read_back(summary.out_path, 'SFEW')
        assert classes == SFEW_CLASSES
        assert_same(found, expected)
        (source, reason), = report_lines(summary)
        assert source.endswith('notes.txt') and 'not an image' in reason

    def test_folder_defaults_and_unknown_class(self, tmp_path):
        make_folder_tree(str(tmp_path / 't'), ('b', 'a'), {'Tr': 'x'})
        layout = folder_layout(str(tmp_path / 't'))
        assert layout.classes == ('a', 'b')
        assert {item.split for item in layout.items} == {'tr'}
        with pytest.raises(
                DataError,
                match=r"class folders \['b'\] are not "
                'among the classes'):
            folder_layout(str(tmp_path / 't'), classes=['a'])

    def test_list(self, tmp_path):
        expected, lists = make_list_layout(str(tmp_path))
        summary = pack(
            list_layout(lists, str(tmp_path / 'images'), ['x', 'y', 'z']),
            tmp_path)
        found, classes = read_back(summary.out_path)
        assert classes == ('x', 'y', 'z')
        assert_same(found, expected)
        with pytest.raises(
                DataError,
                match=r'train.txt:\d+: label 2 is '
                'outside the 2 classes'):
            list_layout(lists, str(tmp_path / 'images'), 2)

    def test_original(self, tmp_path):
        expected, lmdb_path, list_path = make_original(str(tmp_path))
        summary = pack(original_layout(lmdb_path, list_path), tmp_path)
        found, classes = read_back(summary.out_path)
        assert classes == tuple(str(i) for i in range(8))
        assert_same(found, expected)
        assert read_lmdb_metadata(summary.out_path)['classes'] is None

    def test_resize(self, tmp_path):
        make_rafdb(str(tmp_path / 'raf'))
        summary = pack(
            rafdb_layout(str(tmp_path / 'raf')), tmp_path, resize=32)
        meta = read_lmdb_metadata(summary.out_path)
        assert meta['splits']['test']['image_size'] == [32, 32]


class TestResume:

    def test_interrupted_pack_resumes_to_the_same_lmdb(self, tmp_path,
                                                       monkeypatch):
        make_affectnet(str(tmp_path / 'aff'))
        layout = affectnet_layout(str(tmp_path / 'aff'))
        reference = pack(layout, tmp_path, 'ref.lmdb', commit_every=3)

        class Killed(Exception):
            pass

        add = LMDBWriter.add
        calls = []

        def failing_add(self, *args, **kwargs):
            if len(calls) == 7:  # two chunks of 3 committed, one pending
                raise Killed
            calls.append(args[1])
            add(self, *args, **kwargs)

        monkeypatch.setattr(LMDBWriter, 'add', failing_add)
        with pytest.raises(Killed):
            pack(layout, tmp_path, commit_every=3)
        monkeypatch.setattr(LMDBWriter, 'add', add)
        out = str(tmp_path / 'out.lmdb')
        assert not osp.exists(out) and osp.isdir(out + '.partial')
        resumed = pack(layout, tmp_path, commit_every=3, resume=True)
        assert resumed.resumed == 7 and resumed.written == 16 - 7
        assert lmdb_entries(out) == lmdb_entries(reference.out_path)
        assert report_lines(resumed) == report_lines(reference)
