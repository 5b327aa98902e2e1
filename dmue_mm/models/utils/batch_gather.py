"""Global-batch statistics under DDP: autograd-aware row gathering.

DMUE's pairwise statistics (class-mean cosine similarities, Gram matrices)
depend on the whole batch. Under DDP each rank sees ``B/k`` samples; with
:class:`BatchGather` enabled the ranks exchange the rows these statistics
need, so that ``k`` processes x ``B/k`` samples give the losses and the
gradients of one process x ``B`` samples.

Gradient scale (design choice 4): the backward of a gather sums the
gradients of every rank's loss into the owner of each row, and DDP then
*averages* the parameter gradients over the ``k`` ranks. Each rank therefore
optimises ``k`` x its local share of the global mean; the value it reports is
the global mean itself (one all-reduce of the detached local sums), so the
logs of every rank show the 1-process losses.

Without ``torch.distributed`` (or with ``enabled=False``, or one process)
every operation is the identity and the losses are the plain local means.
"""
from typing import List, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ['BatchGather']

_GROUPS = {}


def _gather_group() -> dist.ProcessGroup:
    """A process group of its own for the gathers.

    DDP all-reduces gradient buckets on the default group while backward
    runs; the gathers' backward all-reduces go through a separate group so
    the two streams of collectives can never interleave differently on
    different ranks.
    """
    key = id(dist.group.WORLD)  # a new default group needs a new group
    if key not in _GROUPS:
        _GROUPS.clear()
        _GROUPS[key] = dist.new_group(
            ranks=list(range(dist.get_world_size())))
    return _GROUPS[key]


class _GatherRows(torch.autograd.Function):
    """all_gather of equally shaped tensors; backward = all-reduce (sum)
    of the gradient and this rank's slice of it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group, world: int,
                rank: int) -> torch.Tensor:
        out = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous(), group=group)
        ctx.group, ctx.rank = group, rank
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[ctx.rank], None, None, None


class BatchGather:
    """Collective helpers over the global batch (identity when inactive).

    Args:
        enabled (bool): Gather over DDP ranks when a process group with more
            than one process is initialised.
    """

    def __init__(self, enabled: bool):
        self.active = (enabled and dist.is_available()
                       and dist.is_initialized()
                       and dist.get_world_size() > 1)
        self.world_size = dist.get_world_size() if self.active else 1
        self.rank = dist.get_rank() if self.active else 0
        self.group = _gather_group() if self.active else None

    def gather_labels(self,
                      labels: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
        """Gather the labels of every rank.

        Args:
            labels (Tensor): Local labels (B,).

        Returns:
            tuple: Global labels (N,) in rank order and the per-rank batch
            sizes.
        """
        if not self.active:
            return labels, [labels.numel()]
        size = torch.tensor([labels.numel()], device=labels.device)
        sizes = [torch.empty_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size, group=self.group)
        sizes = [int(s.item()) for s in sizes]
        padded = F.pad(labels, (0, max(sizes) - labels.numel()))
        out = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(out, padded, group=self.group)
        return torch.cat([o[:n] for o, n in zip(out, sizes)]), sizes

    def gather(self, rows: torch.Tensor, sizes: List[int]) -> torch.Tensor:
        """Gather rows of every rank, differentiably.

        Args:
            rows (Tensor): Local rows (n, ...), ``n == sizes[rank]``.
            sizes (List[int]): Row counts of every rank.

        Returns:
            Tensor: All rows (sum(sizes), ...) in rank order.
        """
        if not self.active:
            return rows
        longest = max(sizes)
        if longest == 0:
            return rows
        pad = rows.new_zeros((longest - rows.size(0), ) + rows.shape[1:])
        stacked = _GatherRows.apply(
            torch.cat([rows, pad]), self.group, self.world_size, self.rank)
        return torch.cat([stacked[r, :n] for r, n in enumerate(sizes)])

    def means(self, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Global means from local sums.

        Args:
            sums (Tensor): Local sums of each term (T,), differentiable.
            counts (Tensor): Global number of elements of each term (T,);
                a term with no element gets the value 0.

        Returns:
            Tensor: (T,) whose value is the global mean of each term and
            whose gradient is ``world_size / count`` times the local sum's
            (see the module docstring).
        """
        counts = counts.to(sums.dtype).clamp(min=1)
        if not self.active:
            return sums / counts
        total = sums.detach().clone()
        dist.all_reduce(total, group=self.group)
        scaled = sums * self.mean_scale(counts)
        return scaled + (total / counts - scaled).detach()

    def mean_scale(self, counts: torch.Tensor) -> torch.Tensor:
        """The gradient of :meth:`means` with respect to the local sums.

        Args:
            counts (Tensor): Global number of elements of each term (T,),
                floating point.

        Returns:
            Tensor: ``world_size / count`` per term (a count of 0 counts
            as 1).
        """
        return self.world_size / counts.clamp(min=1)
