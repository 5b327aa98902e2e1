"""The head's row layout (ClassLayout) and batch reductions (BatchGather,
one process: the DDP path is tests/test_models/test_dmue_ddp.py)."""
import pytest
import torch
from dmue_testing import EPS

from dmue_mm.models.heads import BatchGather, ClassLayout

pytestmark = pytest.mark.numeric

LABELS = torch.tensor([2, 0, 1, 2, 0, 2])


class TestClassLayout:

    def test_members_and_others_are_contiguous_spans(self):
        layout = ClassLayout(LABELS, 4)
        for c in range(4):
            members = layout.rows(layout.members(c))
            others = layout.rows(layout.others(c))
            assert sorted(members.tolist()) == (LABELS == c).nonzero(
            )[:, 0].tolist()
            expected = (LABELS != c) if (LABELS == c).any() else \
                torch.ones_like(LABELS, dtype=torch.bool)
            assert sorted(others.tolist()) == expected.nonzero()[:,
                                                                 0].tolist()
        # one doubled copy, only as long as the last span needs
        assert layout.length <= 2 * len(LABELS)
        assert layout.order.numel() == layout.length

    def test_absent_class_sees_the_whole_batch(self):
        layout = ClassLayout(LABELS, 4)  # class 3 absent
        assert layout.members(3)[1] == 0
        assert layout.others(3) == (0, len(LABELS))

    def test_batch_order_undoes_the_sorting(self):
        layout = ClassLayout(LABELS, 4)
        for c in range(4):
            span = layout.others(c)
            rows = layout.rows(span)[layout.batch_order(span)]
            assert rows.tolist() == sorted(rows.tolist())


class TestBatchGatherOneProcess:

    def test_identity_without_a_process_group(self):
        batch = BatchGather(LABELS, 4, enabled=True)
        assert not batch.active
        assert batch.all_labels is LABELS and batch.sizes == [6]
        assert batch.total == 6
        rows = torch.randn(6, 3)
        assert batch.gather(rows) is rows

    def test_counts(self):
        batch = BatchGather(LABELS, 4)
        # rows of branch c: samples with label != c
        assert batch.branch_counts().tolist() == [4.0, 5.0, 3.0, 6.0]
        assert batch.rank_counts(LABELS != 2) == [3]

    def test_mean_of_sums_and_empty_terms(self):
        batch = BatchGather(LABELS, 4)
        sums = torch.tensor([6.0, 0.0, 3.0], requires_grad=True)
        means = batch.mean(sums, torch.tensor([3.0, 0.0, 2.0]))
        # one division each: exact up to a rounding
        torch.testing.assert_close(means, torch.tensor([2.0, 0.0, 1.5]),
                                   atol=0, rtol=EPS)
        means.sum().backward()
        # d mean / d sum = 1 / count (a count of 0 counts as 1)
        expected = 1 / torch.tensor([3.0, 1.0, 2.0])
        torch.testing.assert_close(sums.grad, expected, atol=0, rtol=EPS)
        assert batch.mean(torch.tensor(12.0), 6).item() == 2.0
