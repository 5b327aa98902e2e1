"""The released protocol under 2 gloo processes (``tools/dist_train.sh``):
the total batch is split, the skip decision is the global batch's, the
eval-mode switch happens at the same iteration on both ranks, and in the
eval phase 2 processes x 6 samples give the losses and gradients of
1 process x 12."""
import os.path as osp

import pytest
import torch
from conftest import TOOLS, free_port, run_tool
from released_helpers import (ORDER, USABLE, assert_switch, read_modes,
                              write_config, write_folder)

TERMS = ('loss', 'wce', 'soft', 'sp', 'aux')


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return write_folder(str(tmp_path_factory.mktemp('released_ddp')))


def train(config, work_dir, processes):
    if processes == 1:
        cmd = [osp.join(TOOLS, 'train.py'), config]
        env = {'OMP_NUM_THREADS': '1'}
    else:
        cmd = [osp.join(TOOLS, 'dist_train.sh'), config, str(processes)]
        env = {'PORT': str(free_port())}
    run_tool(cmd + ['--work-dir', work_dir], timeout=300, env=env)


def test_switch_and_skips_agree_on_both_ranks(folder, tmp_path):
    # a total batch of 8: 4 per rank, whose union is the 1-process batch
    config = write_config(str(tmp_path), data_root=folder, iters=2,
                          skip_batches=True, total_batch_size=8)
    work = str(tmp_path / 'work')
    train(config, work, 2)
    for rank in range(2):
        records = read_modes(work, rank)
        # skipped on the global batch, as one process: batches 1, 3, 4
        assert_switch(records, 2, epochs=2, batches=USABLE)
        for record in records:
            rows = ORDER[8 * record['batch_idx']:][:8]
            assert record['labels'] == rows[rank::2]


def test_two_processes_equal_one_in_eval_phase(folder, tmp_path):
    dumps = {}
    for processes in (1, 2):
        config = write_config(
            str(tmp_path), f'run{processes}.py', data_root=folder, iters=0,
            max_epochs=1, total_batch_size=12,
            extra_hooks=('FirstStepDumpHook', ))
        work = str(tmp_path / f'work{processes}')
        train(config, work, processes)
        dumps[processes] = [
            torch.load(osp.join(work, f'first_step_rank{r}.pth'))
            for r in range(processes)
        ]
    (ref, ) = dumps[1]
    for out in dumps[2]:
        for name in TERMS:
            assert out['losses'][name] == pytest.approx(
                ref['losses'][name], rel=1e-4, abs=1e-7), name
        assert set(out['grads']) == set(ref['grads'])
        for name, grad in ref['grads'].items():
            scale = grad.abs().max().item()
            torch.testing.assert_close(
                out['grads'][name], grad, rtol=1e-4,
                atol=1e-5 * scale + 1e-9, msg=lambda m: f'{name}: {m}')
