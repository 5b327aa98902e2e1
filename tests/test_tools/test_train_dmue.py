"""tools/train.py and tools/dist_train.sh train a 7-class DMUE model for 2
epochs on generated data, with and without --amp, logging every term."""
import glob
import json
import math
import os.path as osp

import pytest
import torch

from conftest import (CONFIGS, TOOLS, data_root_options, free_port, run_tool,
                      tensorboard_scalars)

CONFIG = osp.join(CONFIGS, 'dmue', 'res18_generated.py')
CLASSES = ('anger', 'disgust', 'fear', 'happy', 'neutral', 'sad',
           'surprise')
LOGGED = {
    'loss', 'loss_wce', 'loss_soft', 'loss_sp', 'loss_aux', 'wce', 'soft',
    'sp', 'aux', 'ramp_up', 'ramp_down', 'uncertainty_mean',
    'uncertainty_std'
}
# a narrow ResNet-18 keeps the runs and their checkpoints small
SMALL = ['model.backbone.base_channels=8', 'model.backbone.stem_channels=8']


@pytest.fixture(scope='module')
def seven_classes(tmp_path_factory):
    from dmue_mm.utils import write_image_folder
    root = str(tmp_path_factory.mktemp('seven_classes'))
    write_image_folder(root, CLASSES, {'train': 4, 'val': 2}, size=32)
    return root


def records(work_dir):
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data',
                                  'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('launcher,amp', [('train', False), ('train', True),
                                          ('dist', False), ('dist', True)])
def test_two_epochs(seven_classes, tmp_path, launcher, amp):
    work_dir = str(tmp_path / 'work')
    options = ['--work-dir', work_dir] + (['--amp'] if amp else [])
    options += ['--cfg-options', *data_root_options(seven_classes), *SMALL]
    if launcher == 'train':
        cmd = [osp.join(TOOLS, 'train.py'), CONFIG, *options]
        env = {'OMP_NUM_THREADS': '1'}
    else:  # with the global pairwise statistics under MMEngine's DDP
        options.append('model.head.global_stats=True')
        cmd = [osp.join(TOOLS, 'dist_train.sh'), CONFIG, '2', *options]
        env = {'PORT': str(free_port())}
    result = run_tool(cmd, timeout=300, env=env)
    log = result.stdout + result.stderr
    if amp:
        assert 'BF16AmpOptimWrapper' in log
    train = [r for r in records(work_dir) if 'loss_wce' in r]
    assert train, 'no training iteration logged'
    for record in train:
        assert LOGGED <= set(record), LOGGED - set(record)
        assert all(math.isfinite(record[k]) for k in LOGGED)
        weighted = (record['loss_wce'] + record['loss_soft'] +
                    record['loss_sp'] + record['loss_aux'])
        # MMEngine's parse_losses sums the four positive float32 terms (3
        # roundings of <= eps/2 of the total), then the log's window mean
        # (linear, float64): <= 2 eps relative; 16 eps leaves a factor 8
        assert record['loss'] == pytest.approx(
            weighted, rel=16 * torch.finfo(torch.float32).eps)
    # ramp_a = 1: epoch 0 starts at r_up = e^-5, epoch 1 has r_up = 1
    assert {round(r['ramp_up'], 4) for r in train} == {0.0067, 1.0}
    assert any('accuracy/top1' in r for r in records(work_dir))
    ckpt = torch.load(
        osp.join(work_dir, 'epoch_2.pth'), map_location='cpu',
        weights_only=False)
    assert ckpt['meta']['epoch'] == 2
    assert any(k.startswith('head.branches.6.') for k in ckpt['state_dict'])


def test_tensorboard_logs_every_loss_term(seven_classes, tmp_path):
    """``--vis-backend tensorboard``: one epoch writes event files holding
    every logged term at every iteration, equal to the JSON log's values."""
    pytest.importorskip('tensorboard', reason='pip install tensorboard')
    work_dir = str(tmp_path / 'work')
    run_tool([
        osp.join(TOOLS, 'train.py'), CONFIG, '--work-dir', work_dir,
        '--vis-backend', 'tensorboard', '--cfg-options',
        *data_root_options(seven_classes), *SMALL, 'train_cfg.max_epochs=1'
    ],
             timeout=300,
             env={'OMP_NUM_THREADS': '1'})
    scalars = tensorboard_scalars(work_dir)
    train = [r for r in records(work_dir) if 'loss_wce' in r]
    assert len(train) == 4  # 28 images, batch 8, logged every iteration
    for key in LOGGED:
        assert key in scalars, f'{key} not in the TensorBoard events'
        logged = [(r['step'], r[key]) for r in train]
        assert [step for step, _ in scalars[key]] == [s for s, _ in logged]
        # the same value; TensorBoard stores it rounded once to float32
        for (_, got), (_, want) in zip(scalars[key], logged):
            assert got == pytest.approx(want, rel=2**-24, abs=1e-30)
    assert 'accuracy/top1' in scalars
