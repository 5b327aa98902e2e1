"""tools/infer.py: a folder to a CSV file, a table on stdout, one-line
errors."""
import csv
import glob
import os.path as osp

import pytest
import torch
from conftest import CLASSES, TOOLS, load_script, run_tool

from dmue_testing import one_thread  # noqa: F401
from test_converters.deploy_helpers import folder_deploy

INFER = osp.join(TOOLS, 'infer.py')


@pytest.fixture(scope='module')
def deploy_files(tmp_path_factory):
    return folder_deploy(str(tmp_path_factory.mktemp('deploy')))


@pytest.fixture(scope='module')
def tool():
    return load_script(INFER, 'dmue_infer_tool')


class TestInferTool:

    def test_folder_to_csv(self, deploy_files, image_folder, tmp_path):
        out = tmp_path / 'preds.csv'
        result = run_tool([
            INFER, deploy_files.config, deploy_files.checkpoint,
            osp.join(image_folder, 'val'), '--out', out, '--batch-size', '5'
        ],
                          timeout=240,
                          env={'OMP_NUM_THREADS': '1'})
        assert '16 images (0 without prediction)' in result.stdout
        with open(out) as f:
            rows = list(csv.DictReader(f))
        assert [r['image'] for r in rows] == sorted(
            glob.glob(osp.join(image_folder, 'val', '*', '*.png')))
        for row in rows:
            probs = [float(row[c]) for c in CLASSES]
            # 4 float32 softmax outputs (<= 8 eps each: exp, sum, divide)
            # written as shortest reprs (exact): within 32 eps of 1
            assert sum(probs) == pytest.approx(
                1.0, abs=4 * 8 * torch.finfo(torch.float32).eps)
            assert row['pred_class'] == CLASSES[probs.index(max(probs))]

    def test_table_on_stdout(self, tool, deploy_files, image_folder, capsys):
        image = sorted(
            glob.glob(osp.join(image_folder, 'val', 'sad', '*.png')))[0]
        tool.main([deploy_files.config, deploy_files.checkpoint, image])
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0].split() == ['image', 'class', 'p', *CLASSES]
        assert lines[2].startswith(image)

    def test_missing_input_is_one_line(self, tool, deploy_files, capsys):
        with pytest.raises(SystemExit) as exc:
            tool.main([
                deploy_files.config, deploy_files.checkpoint,
                'no/such/photo.jpg'
            ])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "error: input 'no/such/photo.jpg' not found: give "
            'image files or folders'
        ]
