"""The released training protocol in real (tiny) runs on generated data:
the eval-mode switch, the skipped batches and the best checkpoint of the
in-epoch evaluations with its deploy model."""
import glob
import json
import os.path as osp

import pytest
import torch
from dmue_testing import one_thread  # noqa: F401
from mmengine.config import Config
from mmengine.runner import Runner
from released_helpers import (ORDER, USABLE, assert_switch, read_modes,
                              write_config, write_folder)

import dmue_mm  # noqa: F401

BATCHES = len(ORDER) // 8


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return write_folder(str(tmp_path_factory.mktemp('released')))


def train(folder, tmp_path, log_level='WARNING', **kwargs):
    cfg = Config.fromfile(write_config(str(tmp_path), data_root=folder,
                                       **kwargs))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = log_level
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.mark.parametrize('iters', [2, None], ids=['released', 'paper'])
def test_eval_mode_from_iteration_to_epoch_end(folder, tmp_path, iters):
    # in-epoch evaluations after iterations 2 and 4 must not change it
    runner = train(folder, tmp_path, iters=iters, val_iters=2)
    assert_switch(read_modes(runner.work_dir), iters, epochs=2,
                  batches=range(BATCHES))


def test_singleton_class_batches_are_skipped(folder, tmp_path):
    runner = train(folder, tmp_path, skip_batches=True, max_epochs=1,
                   iters=None, log_level='INFO')
    records = read_modes(runner.work_dir)
    assert [r['batch_idx'] for r in records] == USABLE
    for record in records:  # every used batch has each class twice
        assert record['labels'] == ORDER[8 * record['batch_idx']:][:8]
    assert runner.message_hub.get_info('skipped_batches') == 3
    assert runner.iter == BATCHES  # the index advances over skips
    # no Adam update for a skipped batch
    steps = {int(s['step']) for s in
             runner.optim_wrapper.optimizer.state.values()}
    assert steps == {len(USABLE)}
    (log, ) = glob.glob(osp.join(runner.work_dir, '*', '*.log'))
    with open(log) as f:
        assert ('skipped 3 of 5 batches with a class of fewer than 2 '
                'samples') in f.read()


def test_in_epoch_best_checkpoint_and_deploy(folder, tmp_path):
    # lr 0 and eval mode throughout: every evaluation scores the same, so
    # the first (in-epoch, after iteration 2) stays the best
    runner = train(folder, tmp_path, iters=0, val_iters=2, max_epochs=1,
                   lr=0.0)
    work = runner.work_dir
    with open(glob.glob(osp.join(work, '*', 'vis_data',
                                 'scalars.json'))[0]) as f:
        vals = [json.loads(line) for line in f if 'accuracy/top1' in line]
    assert len(vals) == 3  # after iterations 2 and 4, and the epoch end
    name = 'best_accuracy_top1_epoch_1_iter_2.pth'
    assert [osp.basename(p) for p in glob.glob(osp.join(work, 'best_*'))
            ] == [name]
    assert runner.message_hub.get_info('best_ckpt') == osp.join(work, name)
    deploy = torch.load(osp.join(work, 'deploy', name), weights_only=True)
    assert deploy['meta']['dmue_mm']['iter'] == 2
    # the epoch's own checkpoint is the epoch end's, not the in-epoch one
    ckpt = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=False)
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (1, BATCHES)
