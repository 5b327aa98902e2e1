"""tools/align.py end to end (subprocesses, decoding in a worker)."""
import os
import re

import cv2
import pytest
from PIL import Image

from conftest import run_tool

SUMMARY = re.compile(r'aligned (\d+) images \((\d+) faces\), failed (\d+)'
                     r'.*skipped (\d+) done earlier')


@pytest.fixture(scope='module')
def faces():
    from dmue_mm.alignment import sample_photos
    photos = sample_photos()
    return (cv2.resize(photos['grace_hopper'],
                       (222, 260)), cv2.resize(photos['astronaut'],
                                               (260, 260)))


def _counts(stdout: str):
    match = SUMMARY.search(stdout)
    assert match, stdout
    return tuple(int(v) for v in match.groups())


class TestAlignTool:

    def test_folder_corrupt_grey_rgba_and_rerun(self, tmp_path, faces):
        hopper, astro = faces
        src = tmp_path / 'in'
        (src / 'sub').mkdir(parents=True)
        Image.fromarray(hopper).save(src / 'hopper.jpg')
        Image.fromarray(astro).convert('L').save(src / 'sub' / 'grey.png')
        Image.fromarray(astro).convert('RGBA').save(src / 'sub' / 'rgba.png')
        data = (src / 'hopper.jpg').read_bytes()
        (src / 'sub' / 'broken.jpg').write_bytes(data[:len(data) // 2])
        out = tmp_path / 'out'
        cmd = [
            'tools/align.py', src, '--out', out, '--workers', '1',
            '--no-progress'
        ]
        first = run_tool(cmd, timeout=240)
        assert _counts(first.stdout) == (3, 3, 1, 0)
        for rel in ('hopper.png', 'sub/grey.png', 'sub/rgba.png'):
            img = cv2.imread(str(out / rel))
            assert img.shape == (256, 256, 3), rel
        assert not (out / 'sub' / 'broken.png').exists()
        rows = (out / 'report.tsv').read_text().splitlines()
        assert rows[0] == 'path\treason' and len(rows) == 2
        assert rows[1].startswith(f'{src}/sub/broken.jpg\tcorrupt')
        assert (out / 'labels.txt').read_text().split() == [
            'hopper.png', 'sub/grey.png', 'sub/rgba.png'
        ]
        stamps = {
            f: os.stat(out / f).st_mtime_ns
            for f in ('hopper.png', 'sub/grey.png')
        }
        # the rerun does no work
        second = run_tool(cmd, timeout=240)
        assert _counts(second.stdout) == (0, 0, 0, 4)
        assert stamps == {f: os.stat(out / f).st_mtime_ns for f in stamps}

    def test_rafdb_crop_mode_into_lmdb(self, tmp_path, faces):
        from dmue_mm.datasets import read_lmdb_metadata
        basic = tmp_path / 'basic'
        (basic / 'EmoLabel').mkdir(parents=True)
        (basic / 'Image' / 'original').mkdir(parents=True)
        (basic / 'EmoLabel' / 'list_patition_label.txt'
         ).write_text('train_00001.jpg 4\ntest_0001.jpg 1\ntest_0002.jpg 7\n')
        for name, img in zip(('train_00001.jpg', 'test_0001.jpg'), faces):
            Image.fromarray(img).save(basic / 'Image' / 'original' / name)
        out = tmp_path / 'raf.lmdb'
        result = run_tool([
            'tools/align.py', basic, '--dataset', 'rafdb', '--out', out,
            '--mode', 'crop', '--workers', '0', '--no-progress'
        ],
                          timeout=240)
        assert _counts(result.stdout) == (2, 2, 1, 0)
        meta = read_lmdb_metadata(str(out))
        assert meta['splits']['train']['labels'] == [3]
        assert meta['splits']['test']['keys'] == ['test_0001.png']
        assert meta['splits']['test']['image_size'] == [256, 256]
        assert meta['extra']['alignment']['mode'] == 'crop'
        assert 'test_0002.jpg\tmissing file' in (
            tmp_path / 'raf.lmdb.report.tsv').read_text()

    def test_user_errors(self, tmp_path):
        result = run_tool(
            ['tools/align.py', tmp_path / 'nope', '--out', tmp_path / 'o'],
            timeout=120,
            check=False)
        assert result.returncode == 2
        assert result.stderr.strip().startswith('error: input')
