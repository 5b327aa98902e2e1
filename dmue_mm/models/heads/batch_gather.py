"""Global-batch statistics under DDP: autograd-aware row gathering.

DMUE's pairwise statistics (class-mean cosine similarities, Gram matrices)
depend on the whole batch. Under DDP each rank sees ``B/k`` samples; with
:class:`BatchGather` enabled the ranks exchange the rows these statistics
need, so that ``k`` processes x ``B/k`` samples give the losses and the
gradients of one process x ``B`` samples.

The gathers are PyTorch's autograd-aware
``torch.distributed.nn.functional.all_gather``. Gradient scale: the
backward of a gather sums the gradients of every rank's loss into the owner
of each row, and DDP then *averages* the parameter gradients over the ``k``
ranks. Each rank therefore
optimises ``k`` x its local share of the global mean; the value it reports is
the global mean itself (one all-reduce of the detached local sums), so the
logs of every rank show the 1-process losses.

Without ``torch.distributed`` (or with ``enabled=False``, or one process)
every operation is the identity and the losses are the plain local means.
"""
import warnings
from typing import List, Optional, Tuple, Union

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F

__all__ = ['BatchGather']

_GROUPS = {}


def _gather_group() -> dist.ProcessGroup:
    """A process group of its own for the gathers.

    DDP all-reduces gradient buckets on the default group while backward
    runs; the gathers' backward collectives go through a separate group so
    the two streams of collectives can never interleave differently on
    different ranks.
    """
    key = id(dist.group.WORLD)  # a new default group needs a new group
    if key not in _GROUPS:
        _GROUPS.clear()
        _GROUPS[key] = dist.new_group(
            ranks=list(range(dist.get_world_size())))
    return _GROUPS[key]


class BatchGather:
    """The labels of one (global) batch and reductions over it.

    Identity when inactive: the global batch is the local one.

    Args:
        labels (Tensor): Local labels (B,).
        num_classes (int): ``K``.
        enabled (bool): Gather over DDP ranks when a process group with more
            than one process is initialised. Defaults to False.
    """

    def __init__(self,
                 labels: torch.Tensor,
                 num_classes: int,
                 enabled: bool = False):
        self.active = (enabled and dist.is_available()
                       and dist.is_initialized()
                       and dist.get_world_size() > 1)
        self.world_size = dist.get_world_size() if self.active else 1
        self.group = _gather_group() if self.active else None
        self.num_classes = num_classes
        #: local labels (B,)
        self.labels = labels
        #: labels of the global batch (N,) in rank order, and every rank's B
        self.all_labels, self.sizes = self._gather_labels(labels)
        #: N, the size of the global batch
        self.total = self.all_labels.numel()

    def _gather_labels(self,
                       labels: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
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

    def branch_counts(self) -> torch.Tensor:
        """Global number of samples with label != c, for every class c
        (K,), float: the rows of each auxiliary branch."""
        counts = torch.bincount(self.all_labels, minlength=self.num_classes)
        return (self.total - counts).float()

    def rank_counts(self, mask: torch.Tensor) -> List[int]:
        """How many rows of every rank a mask over the global batch keeps.

        Args:
            mask (Tensor): Boolean mask (N,) over :attr:`all_labels`.

        Returns:
            List[int]: The count of every rank, in rank order.
        """
        return [int(part.sum()) for part in mask.split(self.sizes)]

    def gather(self,
               rows: torch.Tensor,
               sizes: Optional[List[int]] = None) -> torch.Tensor:
        """Gather rows of every rank, differentiably.

        Args:
            rows (Tensor): Local rows (n, ...), ``n == sizes[rank]``.
            sizes (List[int], optional): Row counts of every rank. Defaults
                to the batch sizes.

        Returns:
            Tensor: All rows (sum(sizes), ...) in rank order.
        """
        if not self.active:
            return rows
        sizes = self.sizes if sizes is None else sizes
        longest = max(sizes)
        if longest == 0:
            return rows
        padded = F.pad(rows, (0, 0) * (rows.dim() - 1) +
                       (0, longest - rows.size(0)))
        with warnings.catch_warnings():
            # torch marks it deprecated in favour of its functional
            # collectives, whose autograd support is private; it is the
            # public autograd-aware gather
            warnings.simplefilter('ignore', FutureWarning)
            parts = dist_fn.all_gather(padded, group=self.group)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    def mean(self, sums: torch.Tensor,
             counts: Union[int, torch.Tensor]) -> torch.Tensor:
        """Global means from local sums.

        Args:
            sums (Tensor): Local sums (a scalar or one per term),
                differentiable.
            counts (int | Tensor): Global number of elements of each sum;
                a sum over no element gets the value 0.

        Returns:
            Tensor: Shaped as ``sums``; its value is the global mean and its
            gradient ``world_size / count`` times the local sum's (see the
            module docstring).
        """
        counts = torch.as_tensor(counts, dtype=sums.dtype,
                                 device=sums.device).clamp(min=1)
        if not self.active:
            return sums / counts
        total = sums.detach().clone()
        dist.all_reduce(total, group=self.group)
        scaled = sums * (self.world_size / counts)
        return scaled + (total / counts - scaled).detach()
