"""tools/infer.py: a folder to a CSV file, a table on stdout, one-line
errors."""
import csv
import glob
import os.path as osp

import pytest
import torch
from PIL import Image
from conftest import CLASSES, TOOLS, load_script, run_tool

from dmue_testing import one_thread  # noqa: F401
from dmue_testing import write_test_video
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


class TestInferVideo:

    def test_video_to_csv_json_and_timeline(self, deploy_files, tmp_path):
        video = str(tmp_path / 'clip.avi')
        shown = write_test_video(video)
        out = tmp_path / 'clip.csv'
        result = run_tool([
            INFER, deploy_files.config, deploy_files.checkpoint, video,
            '--align', '--fps', '2', '--out', out
        ],
                          timeout=240,
                          env={'OMP_NUM_THREADS': '1'})
        timeline = tmp_path / 'clip_timeline.png'
        assert result.stdout.strip().splitlines()[-1] == (
            f'5 frames (1 without prediction) -> {out}, timeline: '
            f'{timeline}')
        assert 'frame' in result.stderr  # the progress bar
        with open(out) as f:
            rows = list(csv.DictReader(f))
        assert [int(r['frame']) for r in rows] == [0, 5, 10, 15, 20]
        assert [float(r['time']) for r in rows] == [0, 0.5, 1.0, 1.5, 2.0]
        for row in rows:
            if shown[int(row['frame'])] == 'blank':
                assert row['error'] == 'no face found'
                continue
            probs = [float(row[c]) for c in CLASSES]
            assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        with Image.open(timeline) as img:
            assert img.format == 'PNG'

    def test_missing_and_unreadable_video_are_one_line(
            self, tool, deploy_files, tmp_path, capsys):
        bad = tmp_path / 'broken.mp4'
        bad.write_bytes(b'\x00' * 4096)
        for path, message in (
            ('no/such/clip.mp4',
             "error: video 'no/such/clip.mp4' not found: check the path"),
            (str(bad), f"error: video '{bad}' cannot be read: not a video, "
             "or its codec is not in OpenCV; convert it, e.g. "
             '"ffmpeg -i IN -c:v libx264 OUT.mp4"')):
            with pytest.raises(SystemExit) as exc:
                tool.main([deploy_files.config, deploy_files.checkpoint,
                           path])
            assert exc.value.code == 2
            assert capsys.readouterr().err.strip().splitlines() == [message]

    def test_fps_without_video(self, tool, deploy_files, image_folder,
                               capsys):
        with pytest.raises(SystemExit) as exc:
            tool.main([deploy_files.config, deploy_files.checkpoint,
                       image_folder, '--fps', '2'])
        assert exc.value.code == 2
        assert capsys.readouterr().err.strip() == (
            'error: --fps and --plot are for a video input')
