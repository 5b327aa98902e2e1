"""run_alignment in-process: outputs, resume, settings, LMDB, keep-all."""
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from dmue_mm.alignment import (AlignSettings, Record, Source, list_folder,
                               load_rgb, read_records, run_alignment,
                               template_transform, transform_points,
                               warp_image)
from dmue_mm.datasets import LMDBReader, decode_image, read_lmdb_metadata
from dmue_mm.datasets.lmdb_io import image_key
from dmue_mm.utils.errors import CLIError


@pytest.fixture(scope='module')
def small_photos(photos):
    """The photos at about 260 px (fast MTCNN)."""
    return {
        'hopper': cv2.resize(photos['grace_hopper'], (222, 260)),
        'astro': cv2.resize(photos['astronaut'], (260, 260)),
    }


def _save(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _class_folder(tmp_path, small_photos):
    """``in/happy/h.jpg``, ``in/sad/a.png`` and a blank ``in/sad/blank.png``
    (no face), listed with the class layout."""
    src_dir = tmp_path / 'in'
    _save(src_dir / 'happy' / 'h.jpg', small_photos['hopper'])
    _save(src_dir / 'sad' / 'a.png', small_photos['astro'])
    _save(src_dir / 'sad' / 'blank.png', np.zeros((64, 64, 3), np.uint8))
    return src_dir, list_folder(str(src_dir), 'class')


def _run(source, out, detector, **kwargs):
    kwargs.setdefault('workers', 0)
    return run_alignment(source,
                         str(out),
                         progress=False,
                         detector=detector,
                         **kwargs)


class TestFolderOutput:

    def test_labels_resume_and_crash_recovery(self, tmp_path, detector,
                                              small_photos):
        src_dir, source = _class_folder(tmp_path, small_photos)
        out = tmp_path / 'out'
        summary = _run(source, out, detector, batch_size=2)
        assert (summary.aligned, summary.faces, summary.failed) == (2, 2, 1)
        assert summary.failures == {'no face found': 1}
        assert load_rgb(str(out / 'happy' / 'h.png')).shape == (256, 256, 3)
        assert (out / 'labels.txt').read_text() == ('happy/h.png 0\n'
                                                    'sad/a.png 1\n')
        assert (out / 'classes.txt').read_text() == 'happy\nsad\n'
        report = (out / 'report.tsv').read_text().splitlines()
        assert report == [
            'path\treason', f'{src_dir}/sad/blank.png\tno face found'
        ]
        # a rerun does nothing
        again = _run(source, out, detector)
        assert (again.processed, again.done_before) == (0, 3)
        assert 'aligned 0 images (0 faces), failed 0' in again.line()
        # an output lost in a crash is redone, the rest skipped
        os.remove(out / 'sad' / 'a.png')
        redo = _run(source, out, detector)
        assert (redo.aligned, redo.done_before) == (1, 2)
        # failures are retried only on request
        retry = _run(source, out, detector, retry_failed=True)
        assert (retry.processed, retry.failed) == (1, 1)
        # other settings are refused, unless overwriting
        with pytest.raises(CLIError, match='other settings'):
            _run(source, out, detector, settings=AlignSettings(mode='crop'))
        crop = _run(source,
                    out,
                    detector,
                    settings=AlignSettings(mode='crop'),
                    overwrite=True)
        assert crop.aligned == 2
        saved = json.loads((out / '.align_settings.json').read_text())
        assert saved['mode'] == 'crop'

    def test_keep_all_names_and_collisions(self, tmp_path, detector,
                                           small_photos):
        pair = np.ascontiguousarray(
            np.hstack([small_photos['astro'], small_photos['astro'][:, ::-1]]))
        src_dir = tmp_path / 'in'
        _save(src_dir / 'pair.jpg', pair)
        _save(src_dir / 'pair.png', pair)  # same output name as pair.jpg
        out = tmp_path / 'out'
        summary = _run(list_folder(str(src_dir)),
                       out,
                       detector,
                       settings=AlignSettings(keep_all=True, refine=False))
        assert (summary.aligned, summary.faces) == (1, 2)
        assert summary.failures == {'name collision': 1}
        assert sorted(os.listdir(out)) == [
            '.align_journal.tsv', '.align_settings.json', 'alignment.jsonl',
            'labels.txt', 'pair_face0.png', 'pair_face1.png', 'report.tsv'
        ]
        faces = read_records(str(out / 'alignment.jsonl'))
        assert [r['output'] for r in faces] == [
            'pair_face0.png', 'pair_face1.png'
        ]
        # face 0 is the larger box; both come from pair.jpg, unrefined
        assert {r['source'] for r in faces} == {str(src_dir / 'pair.jpg')}
        assert [r['refined'] for r in faces] == [False, False]
        assert 'pair.png\tname collision' in (out / 'report.tsv').read_text()


class TestAlignmentRecords:

    def test_records_rebuild_the_crops_and_survive_a_resume(
            self, tmp_path, detector, small_photos):
        src_dir, source = _class_folder(tmp_path, small_photos)
        out = tmp_path / 'out'
        _run(source, out, detector)
        path = str(out / 'alignment.jsonl')
        first = read_records(path)
        assert [(r['output'], r['label'], r['split']) for r in first] == [
            ('happy/h.png', 0, 'train'), ('sad/a.png', 1, 'train')
        ]
        for rec in first:
            assert rec['source'] == str(src_dir / rec['output'].replace(
                '.png', '.jpg' if 'happy' in rec['output'] else '.png'))
            matrix = np.array(rec['matrix'])
            marks = np.array(rec['landmarks'])
            assert matrix.shape == (2, 3) and marks.shape == (5, 2)
            assert rec['mode'] == 'align' and rec['refined'] is True
            assert 0.9 < rec['score'] <= 1
            x0, y0, x1, y1 = rec['box']
            assert (marks >= [x0, y0]).all() and (marks <= [x1, y1]).all()
            # the matrix is the template fit of the recorded landmarks ...
            np.testing.assert_allclose(template_transform(marks),
                                       matrix,
                                       rtol=0,
                                       atol=1e-9)
            # ... and warping the source with it gives the written crop
            crop = warp_image(load_rgb(rec['source']), matrix, (256, 256))
            np.testing.assert_array_equal(
                crop, load_rgb(str(out / rec['output'])))
        # a crash after a record was appended but before the journal line,
        # and a line cut short: the rerun redoes the image, and the final
        # file has one record per output again, in input order
        os.remove(out / 'sad' / 'a.png')
        with open(path, 'a') as f:
            f.write(json.dumps(dict(first[1], score=0.5)) + '\n')
            f.write('{"source": "cut sh')
        redo = _run(source, out, detector)
        assert (redo.aligned, redo.done_before) == (1, 2)
        assert read_records(path) == first
        assert len(open(path).read().splitlines()) == 2
        # an overwrite in crop mode replaces every record
        _run(source,
             out,
             detector,
             settings=AlignSettings(mode='crop'),
             overwrite=True)
        crops = read_records(path)
        assert [r['mode'] for r in crops] == ['crop', 'crop']
        np.testing.assert_allclose(
            transform_points(np.array(crops[0]['matrix']),
                             np.reshape(crops[0]['box'], (2, 2))),
            [[16, 16], [240, 240]],
            atol=1e-6)


class TestLMDBOutput:

    def test_reads_back(self, tmp_path, detector, small_photos):
        _save(tmp_path / 'img' / 'h.jpg', small_photos['hopper'])
        _save(tmp_path / 'img' / 'a.jpg', small_photos['astro'])
        records = [
            Record(str(tmp_path / 'img' / 'h.jpg'), 'img/h.jpg', 2, 'train'),
            Record(str(tmp_path / 'img' / 'a.jpg'), 'img/a.jpg', 0, 'test'),
            Record(str(tmp_path / 'img' / 'gone.jpg'), 'img/gone.jpg', 1,
                   'train'),
        ]
        source = Source(records, ['x', 'y', 'z'],
                        3,
                        skipped=[('/data/q.jpg', 'label 9 (Uncertain)')])
        out = tmp_path / 'faces.lmdb'
        settings = AlignSettings(image_format='jpeg')
        summary = _run(source, out, detector, workers=1, settings=settings)
        assert (summary.aligned, summary.failed, summary.left_out) == (2, 1, 1)
        meta = read_lmdb_metadata(str(out))
        assert meta['classes'] == ['x', 'y', 'z']
        assert meta['image_format'] == 'jpeg'
        assert meta['splits']['train']['keys'] == ['img/h.jpg']
        assert meta['splits']['train']['labels'] == [2]
        assert meta['splits']['test']['labels'] == [0]
        assert meta['extra']['alignment']['mode'] == 'align'
        img = decode_image(
            LMDBReader(str(out)).get(image_key('test', 'img/a.jpg')))
        assert img.shape == (256, 256, 3)
        faces = read_records(str(tmp_path / 'faces.lmdb.alignment.jsonl'))
        assert [r['output'] for r in faces] == ['train/img/h.jpg',
                                                'test/img/a.jpg']
        report = (tmp_path / 'faces.lmdb.report.tsv').read_text()
        assert '/data/q.jpg\tlabel 9 (Uncertain)' in report
        assert 'gone.jpg\tmissing file' in report
        # a finished LMDB: the rerun has nothing to do
        again = _run(source, out, detector, settings=settings)
        assert (again.processed, again.done_before) == (0, 3)

    def test_needs_labels(self, tmp_path, detector):
        source = Source([Record('/x.jpg', 'x.jpg', None, 'train')])
        with pytest.raises(CLIError, match='needs labels'):
            _run(source, tmp_path / 'x.lmdb', detector)
