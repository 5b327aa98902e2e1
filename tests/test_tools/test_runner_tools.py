"""End-to-end checks of tools/train.py, tools/test.py and tools/dist_train.sh
on the plain cross-entropy baseline over generated data."""
import json
import os.path as osp
import signal

import pytest
import torch

from conftest import (BASELINE_CFG, CLASSES, TOOLS, data_root_options,
                      free_port, run_tool)

TRAIN = osp.join(TOOLS, 'train.py')
TEST = osp.join(TOOLS, 'test.py')
ITERS_PER_EPOCH = 5  # 4 classes x 10 images / batch 8
EPOCHS = 2


def train(work_dir,
          data_root,
          *extra,
          config=BASELINE_CFG,
          loaders=('train_dataloader', 'val_dataloader', 'test_dataloader'),
          **kwargs):
    return run_tool([
        TRAIN, config, '--work-dir', work_dir, *extra, '--cfg-options',
        *data_root_options(data_root, loaders)
    ], **kwargs)


def checkpoint_meta(path):
    return torch.load(path, map_location='cpu', weights_only=False)['meta']


def scalar_iters(work_dir):
    """Training iterations recorded in the visualizer's scalars.json."""
    paths = sorted(
        p for p in __import__('glob').glob(
            osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    iters = []
    for path in paths:
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record:
                    iters.append(record['iter'])
    return iters


@pytest.fixture(scope='module')
def baseline_run(tmp_path_factory, image_folder):
    """An uninterrupted 2-epoch run."""
    work_dir = str(tmp_path_factory.mktemp('baseline'))
    train(work_dir, image_folder)
    return work_dir


@pytest.fixture(scope='module')
def resumed_run(tmp_path_factory, image_folder):
    """A run killed by SIGKILL mid-epoch 2, then resumed with --resume."""
    work_dir = str(tmp_path_factory.mktemp('resumed'))
    kill_cfg = osp.join(work_dir, 'kill.py')
    kill_iter = ITERS_PER_EPOCH + 2  # epoch 2, iteration 2 of 5
    with open(kill_cfg, 'w') as f:
        f.write(f"_base_ = [{BASELINE_CFG!r}]\n"
                "custom_imports = dict(imports=['dmue_mm', 'kill_hook'], "
                'allow_failed_imports=False)\n'
                f"custom_hooks = [dict(type='KillAtIterHook', "
                f'kill_iter={kill_iter})]\n')
    killed = train(work_dir, image_folder, config=kill_cfg, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))
    resumed = train(work_dir, image_folder, '--resume')
    assert 'resumed epoch: 1' in resumed.stdout + resumed.stderr
    return work_dir


class TestTrainResume:

    def test_uninterrupted_run(self, baseline_run):
        meta = checkpoint_meta(osp.join(baseline_run, 'epoch_2.pth'))
        assert (meta['epoch'], meta['iter']) == (EPOCHS,
                                                 EPOCHS * ITERS_PER_EPOCH)

    def test_resume_auto_finishes_same_iterations(self, baseline_run,
                                                  resumed_run):
        full = checkpoint_meta(osp.join(baseline_run, 'epoch_2.pth'))
        resumed = checkpoint_meta(osp.join(resumed_run, 'epoch_2.pth'))
        assert (resumed['epoch'], resumed['iter']) == (full['epoch'],
                                                       full['iter'])
        # the resumed process trained exactly the missing epoch
        iters = scalar_iters(resumed_run)
        assert iters[-ITERS_PER_EPOCH:] == list(
            range(ITERS_PER_EPOCH + 1, EPOCHS * ITERS_PER_EPOCH + 1))

    def test_resumed_checkpoint_evaluates(self, resumed_run, image_folder,
                                          tmp_path):
        out = tmp_path / 'metrics.json'
        run_tool([
            TEST, BASELINE_CFG,
            osp.join(resumed_run, 'epoch_2.pth'), '--work-dir',
            str(tmp_path), '--out',
            str(out), '--out-item', 'metrics', '--cfg-options',
            *data_root_options(image_folder)
        ])
        metrics = json.loads(out.read_text())
        assert 0.0 <= metrics['accuracy/top1'] <= 100.0

    def test_resumed_checkpoint_predicts_with_inferencer(
            self, resumed_run, image_folder):
        from mmpretrain import ImageClassificationInferencer
        inferencer = ImageClassificationInferencer(
            model=BASELINE_CFG,
            pretrained=osp.join(resumed_run, 'epoch_2.pth'),
            device='cpu')
        image = osp.join(image_folder, 'val', CLASSES[1], '00004.png')
        result = inferencer(image)[0]
        assert len(result['pred_scores']) == len(CLASSES)
        # 4 float32 softmax outputs of <= 8 eps relative error each
        assert abs(sum(result['pred_scores']) - 1.0) <= 4 * 8 * torch.finfo(
            torch.float32).eps
        assert 0 <= result['pred_label'] < len(CLASSES)


class TestDistributedAndAmp:

    def test_dist_train_two_cpu_processes(self, image_folder, tmp_path):
        work_dir = str(tmp_path / 'ddp')
        result = run_tool([
            osp.join(TOOLS, 'dist_train.sh'), BASELINE_CFG, '2',
            '--work-dir', work_dir, '--cfg-options',
            *data_root_options(image_folder)
        ],
                          env={'PORT': str(free_port())},
                          timeout=400)
        log = result.stdout + result.stderr
        assert "backend='gloo'" in log
        # each of the 2 ranks sees half of the 40 images: 3 batches of <= 8
        meta = checkpoint_meta(osp.join(work_dir, 'epoch_2.pth'))
        assert (meta['epoch'], meta['iter']) == (2, 6)
        # and evaluates with 2 processes: results gathered over both ranks
        metrics = tmp_path / 'm.json'
        run_tool([
            osp.join(TOOLS, 'dist_test.sh'), BASELINE_CFG,
            osp.join(work_dir, 'epoch_2.pth'), '2', '--work-dir', work_dir,
            '--out',
            str(metrics), '--out-item', 'metrics', '--cfg-options',
            *data_root_options(image_folder, ('test_dataloader', ))
        ],
                 env={'PORT': str(free_port())},
                 timeout=300)
        result = json.loads(metrics.read_text())
        assert 0.0 <= result['accuracy/top1'] <= 100.0
        # 16 validation images, all counted once across the two ranks
        assert sum(result['expression/support_classwise']) == 16

    def test_amp_on_cpu_trains(self, image_folder, tmp_path):
        work_dir = str(tmp_path / 'amp')
        # bf16 convolutions are slow on CPU: one epoch is enough here
        result = run_tool([
            TRAIN, BASELINE_CFG, '--work-dir', work_dir, '--amp',
            '--no-validate', '--cfg-options', 'train_cfg.max_epochs=1',
            *data_root_options(image_folder, ('train_dataloader', ))
        ])
        assert "type='BF16AmpOptimWrapper'" in result.stdout + result.stderr
        meta = checkpoint_meta(osp.join(work_dir, 'epoch_1.pth'))
        assert meta['iter'] == ITERS_PER_EPOCH


class TestOneLineErrors:

    def _assert_one_line_error(self, result, *fragments):
        assert result.returncode == 2
        lines = [line for line in result.stderr.splitlines()
                 if line.startswith('error:')]
        assert len(lines) == 1, result.stderr[-2000:]
        assert 'Traceback' not in result.stderr
        for fragment in fragments:
            assert fragment in lines[0]

    def test_missing_config(self, tmp_path):
        missing = str(tmp_path / 'nope.py')
        result = run_tool([TRAIN, missing], check=False, timeout=120)
        self._assert_one_line_error(result, missing, 'not found')

    def test_unknown_cfg_option(self, tmp_path):
        result = run_tool([
            TRAIN, BASELINE_CFG, '--work-dir',
            str(tmp_path), '--cfg-options', 'model.head.num_clases=3'
        ],
                          check=False,
                          timeout=120)
        self._assert_one_line_error(result, 'model.head.num_clases',
                                    'num_classes')

    def test_missing_checkpoint(self, tmp_path):
        result = run_tool([TEST, BASELINE_CFG, str(tmp_path / 'x.pth')],
                          check=False,
                          timeout=120)
        self._assert_one_line_error(result, 'x.pth')
