"""benchmarks/align_speed.py: the input images, and a small run that writes
its table and JSON."""
import json
import os.path as osp

import numpy as np
import pytest
from conftest import ROOT, load_script, run_tool

SCRIPT = osp.join(ROOT, 'benchmarks', 'align_speed.py')


class TestAlignSpeed:

    def test_images_are_tiled_flipped_copies(self):
        bench = load_script(SCRIPT, 'align_speed')
        images = bench.make_images(5, 96)
        assert [im.shape for im in images] == [(96, 96, 3)] * 5
        assert all(im.dtype == np.uint8 for im in images)
        assert len({im.tobytes() for im in images}) == 5

    def test_small_run_writes_table_and_json(self, tmp_path):
        out = tmp_path / 'speed.json'
        proc = run_tool([
            SCRIPT, '--images', '3', '--size', '160', '--repeats', '2',
            '--threads', '1', '--workers', '0', '--variants', 'pipeline',
            'mtcnn batched', '--out', out
        ],
                        timeout=300)
        assert '| variant | images/s [min-max] | time / mtcnn [min-max] |' \
            in proc.stdout
        result = json.loads(out.read_text())
        assert result['setup']['variants'] == [
            'mtcnn', 'pipeline', 'mtcnn batched'
        ]
        rows = result['results']
        assert rows['mtcnn']['time_ratio_to_mtcnn']['median'] == 1.0
        for row in rows.values():
            assert len(row['seconds']) == 2
            assert all(s > 0 for s in row['seconds'])
            rates = sorted(3 / s for s in row['seconds'])
            assert row['images_per_s']['min'] == pytest.approx(rates[0])
            assert row['images_per_s']['max'] == pytest.approx(rates[1])
