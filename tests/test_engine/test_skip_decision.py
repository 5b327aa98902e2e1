"""The skip decision of the released protocol is the same on every rank:
with 2 gloo processes on the global batch's class counts, or, without
global statistics, skipped everywhere when any rank fails; one process
checks its own batch (an absent class counts as 0).

The file is also the worker: ``torchrun --nproc_per_node 2
test_skip_decision.py DIR`` decides every case and saves the answers."""
import json
import os.path as osp
import sys

import pytest
from dmue_testing import samples

from dmue_mm.engine import must_skip

K = 4
# case: (rank 0 labels, rank 1 labels)
CASES = {
    'split_classes': ([0, 0, 1, 1], [2, 2, 3, 3]),
    'singleton_on_rank1': ([0, 0, 1, 1, 2, 2, 3, 3],
                           [0, 1, 2, 3, 0, 1, 2, 2]),
    'both_fine': ([0, 0, 1, 1, 2, 2, 3, 3], [3, 3, 2, 2, 1, 1, 0, 0]),
    'global_singleton': ([0, 0, 1, 1, 2, 2], [0, 1, 2, 2, 3, 0]),
}
# (global decision, per-rank decision): True = skip on both ranks
EXPECTED = {
    'split_classes': (False, True),
    'singleton_on_rank1': (False, True),
    'both_fine': (False, False),
    'global_singleton': (True, True),
}


def run_worker(folder: str) -> None:
    import torch.distributed as dist

    from dmue_mm.utils.cli import shutdown_process_group
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    out = {
        name: [must_skip(samples(labels[rank]), K, global_decision=g)
               for g in (True, False)]
        for name, labels in CASES.items()
    }
    with open(osp.join(folder, f'rank{rank}.json'), 'w') as f:
        json.dump(out, f)
    shutdown_process_group()


@pytest.mark.parametrize('labels,skip', [([0, 0, 1, 1, 2, 2, 3, 3], False),
                                         ([0, 0, 1, 1, 2, 2], True),
                                         ([0, 0, 1, 2, 2, 3, 3, 3], True)])
def test_one_process(labels, skip):
    for global_decision in (True, False):
        assert must_skip(samples(labels), K,
                         global_decision=global_decision) == skip


def test_two_ranks_agree(tmp_path):
    from conftest import free_port, run_tool
    run_tool([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
        '2', '--master_port', str(free_port()), __file__, str(tmp_path)
    ], timeout=180, env={'OMP_NUM_THREADS': '1'})
    answers = []
    for rank in range(2):
        with open(tmp_path / f'rank{rank}.json') as f:
            answers.append(json.load(f))
    assert answers[0] == answers[1]
    assert {k: tuple(v) for k, v in answers[0].items()} == EXPECTED


if __name__ == '__main__':
    run_worker(sys.argv[1])
