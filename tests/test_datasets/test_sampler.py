"""ClassBalancedSampler: balance, determinism, and the split over ranks."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.hooks import DistSamplerSeedHook

from mmpretrain.registry import DATA_SAMPLERS

import dmue_mm.datasets.samplers as samplers
from dmue_mm.datasets import ClassBalancedSampler

# 5 classes of 400, 200, 100, 50 and 25 samples
COUNTS = (400, 200, 100, 50, 25)


class FakeDataset:
    """Labels only, as the sampler needs."""

    def __init__(self, counts=COUNTS):
        self.labels = np.repeat(np.arange(len(counts)), counts)

    def __len__(self):
        return len(self.labels)

    def get_gt_labels(self):
        return self.labels


class CatIdsDataset:
    """An MMEngine-wrapper-like dataset: get_cat_ids only."""

    def __init__(self, counts):
        self.dataset = FakeDataset(counts)

    def __len__(self):
        return len(self.dataset)

    def get_cat_ids(self, idx):
        return [int(self.dataset.labels[idx])]


def ranks(dataset, world_size, monkeypatch, **kwargs):
    """One sampler per rank, as each process would build it."""
    result = []
    for rank in range(world_size):
        monkeypatch.setattr(
            samplers, 'get_dist_info', lambda r=rank: (r, world_size))
        result.append(ClassBalancedSampler(dataset, **kwargs))
    return result


class TestClassBalancedSampler:

    def test_class_frequencies_are_uniform(self):
        # 60,000 draws: each class count is Binomial(60000, 1/5), whose
        # relative sd is sqrt(0.8 / (0.2 * 60000)) = 0.82%, so the 5%
        # tolerance is 6.1 sd (the chance that any of the 5 classes fails
        # is ~1e-8). The natural frequencies would be 52% ... 3%.
        dataset = FakeDataset()
        sampler = ClassBalancedSampler(dataset, num_samples=60000, seed=0)
        indices = np.fromiter(iter(sampler), np.int64)
        assert len(indices) == len(sampler) == 60000
        freq = np.bincount(dataset.labels[indices], minlength=5) / 60000
        # statistical: binomial sd sqrt(.2 * .8 / 60000) = 0.0016 (0.8%);
        # rtol 0.05 is 6 sd, and the seed is fixed
        np.testing.assert_allclose(freq, 0.2, rtol=0.05)

    def test_default_epoch_is_the_dataset_length(self):
        sampler = DATA_SAMPLERS.build(
            dict(type='ClassBalancedSampler'),
            default_args=dict(dataset=FakeDataset(), seed=3))
        assert len(list(sampler)) == len(sampler) == sum(COUNTS)

    def test_same_seed_and_epoch_same_stream(self):
        first = ClassBalancedSampler(FakeDataset(), seed=1)
        second = ClassBalancedSampler(FakeDataset(), seed=1)
        assert list(first) == list(second) == list(first)
        first.set_epoch(1)
        assert list(first) != list(second)
        second.set_epoch(1)
        assert list(first) == list(second)
        assert list(ClassBalancedSampler(FakeDataset(), seed=2)) != list(
            ClassBalancedSampler(FakeDataset(), seed=1))

    def test_two_ranks_split_one_stream(self, monkeypatch):
        dataset = FakeDataset()
        single, = ranks(dataset, 1, monkeypatch, seed=5, num_samples=1001)
        rank0, rank1 = ranks(dataset, 2, monkeypatch, seed=5, num_samples=1001)
        assert len(rank0) == len(rank1) == 501  # ceil(1001 / 2)
        # disjoint positions of one global stream (1002 draws) ...
        stream = rank0.global_indices()
        assert torch.equal(stream, rank1.global_indices())
        assert list(rank0) == stream[0::2].tolist()
        assert list(rank1) == stream[1::2].tolist()
        # ... which is what one process draws for the same epoch size
        single_stream = ClassBalancedSampler(
            dataset, seed=5, num_samples=1002).global_indices()
        assert torch.equal(stream, single_stream)
        assert list(rank0) != list(rank1)

    def test_dist_sampler_seed_hook_sets_the_epoch(self):
        sampler = ClassBalancedSampler(FakeDataset(), seed=0)
        runner = SimpleNamespace(
            epoch=4,
            train_loop=SimpleNamespace(
                dataloader=SimpleNamespace(sampler=sampler)))
        DistSamplerSeedHook().before_train_epoch(runner)
        assert sampler.epoch == 4

    def test_labels_from_get_cat_ids(self):
        sampler = ClassBalancedSampler(CatIdsDataset((3, 1)), seed=0)
        # 1 / count in float64 on both sides: the same rounding
        torch.testing.assert_close(
            sampler.weights,
            torch.tensor([1 / 3] * 3 + [1.0], dtype=torch.double))

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match='empty'):
            ClassBalancedSampler(FakeDataset(()), seed=0)
        with pytest.raises(ValueError, match='num_samples'):
            ClassBalancedSampler(FakeDataset(), num_samples=0, seed=0)
