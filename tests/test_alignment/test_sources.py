"""Input listings: folder layouts, list files, RAF-DB and AffectNet."""
import pytest

from dmue_mm.alignment import (list_affectnet, list_file, list_folder,
                               list_rafdb)
from dmue_mm.datasets import AFFECTNET8_CLASSES, RAFDB_CLASSES
from dmue_mm.utils.errors import DataError


def _touch(root, *relpaths):
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'x')


class TestFolder:

    def test_flat(self, tmp_path):
        _touch(tmp_path, 'b.jpg', 'a/c.PNG', 'a/notes.txt')
        src = list_folder(str(tmp_path))
        assert [r.relpath for r in src.records] == ['b.jpg', 'a/c.PNG']
        assert {r.label for r in src.records} == {None}
        assert src.num_classes == 0 and src.records[0].split == 'train'

    def test_order_is_the_former_walk_order(self, tmp_path):
        """mmengine's scandir replaced a sorted os.walk: same records, same
        order (a folder's files before its sub-folders)."""
        import os
        _touch(tmp_path, 'z.png', 'a.b/x.png', 'a/y.JPG', 'a/b/c.png',
               'a/a.png', 'a-b/q.png', 'A/k.png', 'a/b/readme.md')
        walked = []
        for folder, dirs, files in os.walk(tmp_path):
            dirs.sort()
            rel = os.path.relpath(folder, tmp_path)
            walked += [
                f if rel == '.' else f'{rel}/{f}' for f in sorted(files)
                if not f.endswith('.md')
            ]
        src = list_folder(str(tmp_path))
        assert [r.relpath for r in src.records] == walked
        assert walked[0] == 'z.png' and len(walked) == 7

    def test_split_class(self, tmp_path):
        _touch(tmp_path, 'Train/Happy/1.png', 'Train/Angry/2.png',
               'Val/Sad/3.png')
        src = list_folder(str(tmp_path), 'split/class')
        assert src.classes == ['Angry', 'Happy', 'Sad']
        assert [(r.split, r.label) for r in src.records] == [('Train', 0),
                                                             ('Train', 1),
                                                             ('Val', 2)]
        src = list_folder(str(tmp_path / 'Train'), 'class', split='train')
        assert [r.label for r in src.records] == [0, 1]

    def test_layout_too_deep(self, tmp_path):
        _touch(tmp_path, 'x.png')
        with pytest.raises(DataError, match='--folder-layout'):
            list_folder(str(tmp_path), 'class')
        with pytest.raises(DataError, match='not a folder'):
            list_folder(str(tmp_path / 'nope'))


class TestListFile:

    def test_labels_and_paths(self, tmp_path):
        (tmp_path /
         'list.txt').write_text('# comment\nimgs/a b.jpg 2\n\nimgs/c.jpg 0\n')
        src = list_file(str(tmp_path / 'list.txt'), split='test')
        assert [(r.relpath, r.label, r.split)
                for r in src.records] == [('imgs/a b.jpg', 2, 'test'),
                                          ('imgs/c.jpg', 0, 'test')]
        assert src.records[0].path == str(tmp_path / 'imgs/a b.jpg')
        assert src.classes == ['0', '1', '2']
        named = list_file(str(tmp_path / 'list.txt'), classes=['x', 'y', 'z'])
        assert named.classes == ['x', 'y', 'z']
        with pytest.raises(DataError, match='outside the 2 classes'):
            list_file(str(tmp_path / 'list.txt'), classes=['x', 'y'])

    def test_unlabelled_and_mixed(self, tmp_path):
        (tmp_path / 'l.txt').write_text('a.jpg\nb.jpg\n')
        src = list_file(str(tmp_path / 'l.txt'), root='/data')
        assert src.num_classes == 0 and src.records[1].path == '/data/b.jpg'
        (tmp_path / 'm.txt').write_text('a.jpg 1\nb.jpg\n')
        with pytest.raises(DataError, match='label every line or none'):
            list_file(str(tmp_path / 'm.txt'))


class TestDatasets:

    def test_rafdb(self, tmp_path):
        basic = tmp_path / 'basic'
        (basic / 'EmoLabel').mkdir(parents=True)
        (basic / 'EmoLabel/list_patition_label.txt'
         ).write_text('train_00001.jpg 5\ntest_0001.jpg 7\n')
        src = list_rafdb(str(tmp_path))  # the folder holding basic/ works
        assert [(r.relpath, r.label, r.split)
                for r in src.records] == [('train_00001.jpg', 4, 'train'),
                                          ('test_0001.jpg', 6, 'test')]
        assert src.records[0].path == str(basic /
                                          'Image/original/train_00001.jpg')
        assert src.classes == list(RAFDB_CLASSES)
        (basic / 'EmoLabel/list_patition_label.txt').write_text('x.jpg 9\n')
        with pytest.raises(DataError, match='1-7'):
            list_rafdb(str(basic))

    def test_affectnet_drops_non_emotions(self, tmp_path):
        lists = tmp_path / 'Manually_Annotated_file_lists'
        lists.mkdir()
        header = ('subDirectory_filePath,face_x,face_y,face_width,'
                  'face_height,facial_landmarks,expression,valence,arousal\n')
        (lists /
         'training.csv').write_text(header +
                                    '1/a.jpg,0,0,9,9,"1;2",1,0.1,0.2\n'
                                    '1/b.jpg,0,0,9,9,"1;2",9,0.1,0.2\n'
                                    '2/c.jpg,0,0,9,9,"1;2",7,0.1,0.2\n')
        (lists / 'validation.csv').write_text(header +
                                              '3/d.jpg,0,0,9,9,"1;2",6,0,0\n')
        src = list_affectnet(str(tmp_path))
        assert [(r.relpath, r.label, r.split)
                for r in src.records] == [('1/a.jpg', 1, 'train'),
                                          ('2/c.jpg', 7, 'train'),
                                          ('3/d.jpg', 6, 'test')]
        assert src.records[0].path == str(tmp_path /
                                          'Manually_Annotated_Images/1/a.jpg')
        assert src.classes == list(AFFECTNET8_CLASSES)
        assert src.skipped == [('affectnet8 train split',
                                '1 left out: label 9 Uncertain is not one of '
                                'the classes')]
        src7 = list_affectnet(str(tmp_path), num_classes=7)
        assert len(src7.records) == 2 and src7.skipped_count == 2
        assert any('label 7 Contempt' in r for _, r in src7.skipped)
