"""The README's demo command (tools/demo.py), shortened to one epoch."""
import json
import os.path as osp
import re

import numpy as np

from conftest import TOOLS, load_script, run_tool


def test_pack_digits_proxy(tmp_path):
    pack_digits_proxy = load_script(osp.join(TOOLS, 'demo.py'),
                                    'demo').pack_digits_proxy
    from dmue_mm.datasets.lmdb_io import (LMDBReader, decode_image,
                                          image_key, read_lmdb_metadata)
    path = str(tmp_path / 'digits.lmdb')
    counts = pack_digits_proxy(path, noise=0.2, test_fraction=0.3, size=16)
    assert counts['train'] + counts['test'] == 1797
    assert counts['flipped'] == round(0.2 * counts['train'])
    meta = read_lmdb_metadata(path)
    assert meta['classes'] == [str(d) for d in range(10)]
    for split, flipped in (('train', counts['flipped']), ('test', 0)):
        info = meta['splits'][split]
        clean = np.asarray(info['extras']['clean_label'])
        labels = np.asarray(info['labels'])
        # noise only on the training split, exactly the reported count
        assert int((clean != labels).sum()) == flipped
    key = meta['splits']['test']['keys'][0]
    image = decode_image(LMDBReader(path).get(image_key('test', key)))
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8


def test_demo_runs_end_to_end(tmp_path):
    work_dir = tmp_path / 'demo'
    result = run_tool(
        [osp.join(TOOLS, 'demo.py'), '--work-dir', work_dir, '--epochs', 1],
        timeout=600)
    out = result.stdout
    match = re.search(r'pruned model top-1 accuracy: ([\d.]+)', out)
    assert match, out[-3000:]
    metrics = json.loads((work_dir / 'pruned_metrics.json').read_text())
    # printed with 4 significant digits: a percentage in [10, 100) is off by
    # <= 0.005 (100 itself prints exactly)
    assert abs(metrics['expression/top1'] - float(match.group(1))) <= 0.005
    # 539 clean test images, all evaluated by the pruned model
    assert sum(metrics['expression/support_classwise']) == 539
    assert (work_dir / 'pruned_confusion_matrix.png').read_bytes()[:8] == \
        b'\x89PNG\r\n\x1a\n'
    assert (work_dir / 'deploy' / 'last.pth').is_file()
