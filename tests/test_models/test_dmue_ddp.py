"""Global pairwise statistics under DDP: 2 gloo processes x B/2 samples give
the losses and the gradients of 1 process x B samples (design choice 4).

The file is also the worker script: ``torchrun --nproc_per_node 2
test_dmue_ddp.py DIR`` trains one DDP step (without
``find_unused_parameters``) on the inputs in DIR and saves what it saw.
"""
import os
import os.path as osp
import sys

import pytest
import torch
from dmue_testing import loss_total, one_thread, samples, tiny_dmue  # noqa
from mmengine.logging import MessageHub

pytestmark = pytest.mark.numeric

K = 4
# rank 0 has no sample of class 3; every class appears 3 times globally
LABELS = [0, 1, 2, 0, 1, 2, 3, 3, 0, 1, 2, 3]
TERMS = ('wce', 'soft', 'sp', 'aux')


def build_model():
    """Same tiny model in every process, BN in eval mode, no dropout;
    ramp weights 1 (epoch = ramp_a)."""
    MessageHub.get_current_instance().update_info('epoch', 6)
    return tiny_dmue(K, global_stats=True).eval()


def run_worker(folder: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from dmue_mm.utils.cli import shutdown_process_group
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    data = torch.load(osp.join(folder, 'inputs.pth'))
    model = build_model()
    model.load_state_dict(data['state'])
    ddp = DistributedDataParallel(model, find_unused_parameters=False)
    rows = slice(rank * len(LABELS) // world,
                 (rank + 1) * len(LABELS) // world)
    losses = ddp(data['x'][rows], samples(LABELS[rows]), mode='loss')
    loss_total(losses).backward()
    torch.save(
        dict(
            losses={k: v.item() for k, v in losses.items()},
            grads={n: p.grad for n, p in model.named_parameters()}),
        osp.join(folder, f'rank{rank}.pth'))
    shutdown_process_group()  # barrier first: see its docstring


class TestGlobalStatsDDP:

    def test_two_processes_match_one(self, tmp_path):
        from conftest import run_tool
        torch.manual_seed(0)
        model = build_model()
        with torch.no_grad():  # non-trivial classifier and MLP weights
            for module in (model.head.fc, model.head.aux_fcs,
                           model.head.uncertainty_mlp):
                for p in module.parameters():
                    p.copy_(torch.randn_like(p) * 0.3)
        x = torch.randn(len(LABELS), 3, 32, 32)
        torch.save(dict(state=model.state_dict(), x=x),
                   tmp_path / 'inputs.pth')

        losses = model.loss(x, samples(LABELS))
        loss_total(losses).backward()
        ref_grads = {n: p.grad for n, p in model.named_parameters()}

        run_tool([
            sys.executable, '-m', 'torch.distributed.run',
            '--nproc_per_node', '2', '--master_port',
            str(29500 + os.getpid() % 1000), __file__,
            str(tmp_path)
        ], timeout=240, env={'OMP_NUM_THREADS': '1'})

        for rank in range(2):
            out = torch.load(tmp_path / f'rank{rank}.pth')
            for name in TERMS:
                ref = losses[name].item()
                tol = dict(rel=1e-4) if name == 'sp' else dict(abs=1e-5)
                assert out['losses'][name] == pytest.approx(ref, **tol), name
            for name, ref in ref_grads.items():
                grad = out['grads'][name]
                assert grad is not None, name
                scale = ref.abs().max().item()
                torch.testing.assert_close(
                    grad, ref, rtol=1e-4, atol=1e-5 * scale + 1e-9,
                    msg=lambda m: f'{name}: {m}')


if __name__ == '__main__':
    run_worker(sys.argv[1])
