"""A recipe's total batch of 72 over any number of processes."""
import os.path as osp

import pytest
from conftest import CONFIGS
from mmengine.config import Config

from dmue_mm.engine import apply_total_batch_size, launched_world_size
from dmue_mm.utils.errors import CLIError

RECIPE = osp.join(CONFIGS, 'dmue', 'res18_affectnet.py')


@pytest.mark.parametrize('world,batch', [(1, 72), (2, 36), (4, 18),
                                         (8, 9)])
def test_split_over_processes(world, batch):
    cfg = Config.fromfile(RECIPE)
    apply_total_batch_size(cfg, world)
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.model.head.global_stats == (world > 1)
    # the LR stays: --auto-scale-lr sees the base batch
    assert batch * world == cfg.auto_scale_lr.base_batch_size
    assert cfg.optim_wrapper.optimizer.lr == 1e-4


def test_not_divisible():
    cfg = Config.fromfile(RECIPE)
    with pytest.raises(CLIError, match='total_batch_size=72 is not '
                       'divisible by the 5 processes'):
        apply_total_batch_size(cfg, 5)


def test_per_process_batch_conflicts():
    cfg = Config.fromfile(RECIPE)
    with pytest.raises(CLIError, match='set total_batch_size=N instead'):
        apply_total_batch_size(cfg, 4, {'train_dataloader.batch_size': 18})
    cfg.total_batch_size = None  # the explicit opt-out
    cfg.train_dataloader.batch_size = 20
    apply_total_batch_size(cfg, 4, {'train_dataloader.batch_size': 20})
    assert cfg.train_dataloader.batch_size == 20
    assert not cfg.model.head.global_stats


def test_world_size_of_each_launcher(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '4')
    monkeypatch.setenv('SLURM_NTASKS', '8')
    assert launched_world_size('none') == 1
    assert launched_world_size('pytorch') == 4
    assert launched_world_size('slurm') == 8
