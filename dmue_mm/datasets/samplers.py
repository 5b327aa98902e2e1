"""Class-balanced sampling with replacement, distributed over ranks.

The original DMUE training draws every epoch ``len(dataset)`` indices with
``torch.multinomial(weights, n, replacement=True)`` where each sample weighs
1 / (size of its class) (ufoym's ``ImbalancedDatasetSampler``), so
batches are class-balanced in expectation. Its DDP variant lets every rank
draw its own full epoch. Here one global stream of ``num_samples`` draws is
generated from ``seed + epoch`` on every rank and rank ``r`` of ``k`` takes
positions ``r, r + k, r + 2k, ...``: the ranks' streams are disjoint parts of
one epoch, together exactly what one process would draw, and the union of
the ranks' i-th batches (batch B each) is the i-th batch of a single process
with batch k*B.
"""
import math
from typing import Iterator, Optional, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmpretrain.registry import DATA_SAMPLERS

__all__ = ['ClassBalancedSampler', 'dataset_labels']


def dataset_labels(dataset: Sized) -> np.ndarray:
    """Class index of every sample, without decoding images.

    Uses ``get_gt_labels()`` (MMPretrain datasets) or ``get_cat_ids(i)``
    (MMEngine dataset wrappers).
    """
    if hasattr(dataset, 'get_gt_labels'):
        labels = dataset.get_gt_labels()
    elif hasattr(dataset, 'get_cat_ids'):
        labels = [dataset.get_cat_ids(i)[0] for i in range(len(dataset))]
    else:
        raise TypeError(f'{type(dataset).__name__} has neither get_gt_labels '
                        'nor get_cat_ids: the class-balanced sampler needs '
                        'the labels')
    return np.asarray(labels, dtype=np.int64).reshape(-1)


@DATA_SAMPLERS.register_module()
class ClassBalancedSampler(Sampler):
    """Draw indices with replacement, each with weight 1 / its class count.

    Deterministic per ``seed`` and epoch (MMEngine's ``DistSamplerSeedHook``
    calls :meth:`set_epoch`). Each of the k ranks yields
    ``ceil(num_samples / k)`` indices, its share of one global stream.

    Args:
        dataset (Sized): The dataset (needs ``get_gt_labels`` or
            ``get_cat_ids``).
        num_samples (int, optional): Draws per epoch over all ranks.
            Defaults to ``len(dataset)``, as the original.
        seed (int, optional): Random seed, shared by all ranks. Defaults to
            a seed synchronised across ranks (as ``DefaultSampler``).
    """

    def __init__(self,
                 dataset: Sized,
                 num_samples: Optional[int] = None,
                 seed: Optional[int] = None):
        rank, world_size = get_dist_info()
        self.rank = rank
        self.world_size = world_size
        self.dataset = dataset
        labels = dataset_labels(dataset)
        if labels.size == 0:
            raise ValueError('the class-balanced sampler got an empty dataset')
        if labels.min() < 0:
            raise ValueError('the class-balanced sampler needs labels >= 0, '
                             f'got {labels.min()}')
        counts = np.bincount(labels)
        self.class_counts = counts
        self.weights = torch.as_tensor(
            1.0 / counts[labels], dtype=torch.double)
        total = len(labels) if num_samples is None else int(num_samples)
        if total < 1:
            raise ValueError(f'num_samples must be positive, got {total}')
        self.num_samples = math.ceil(total / world_size)
        self.total_size = self.num_samples * world_size
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0

    def global_indices(self) -> torch.Tensor:
        """The whole epoch's stream (all ranks), from ``seed + epoch``."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return torch.multinomial(
            self.weights,
            self.total_size,
            replacement=True,
            generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_indices()[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which changes the stream deterministically."""
        self.epoch = epoch
