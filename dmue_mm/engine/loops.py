"""The DMUE training loop: the released code's in-epoch evaluations and
batch skipping on top of MMEngine's ``EpochBasedTrainLoop``."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import all_reduce
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import LOOPS
from torch.utils.data import DataLoader

from dmue_mm.hooks.checkpoint import IN_EPOCH_VAL_KEY

__all__ = ['DMUETrainLoop', 'batch_class_counts', 'must_skip']


def batch_class_counts(data_samples: Sequence, num_classes: int
                       ) -> torch.Tensor:
    """Samples per class of a batch.

    Args:
        data_samples (Sequence[DataSample]): With hard ``gt_label``.
        num_classes (int): ``K``.

    Returns:
        Tensor: Counts (K,), int64.
    """
    labels = torch.cat([s.gt_label.reshape(-1) for s in data_samples])
    return torch.bincount(labels.long().cpu(), minlength=num_classes)


def must_skip(data_samples: Sequence,
              num_classes: int,
              min_samples: int = 2,
              global_decision: bool = False) -> bool:
    """Whether a batch has a class of fewer than ``min_samples`` samples.

    The same answer on every DDP rank (one all-reduce; none without a
    process group): with ``global_decision`` on the class counts of the
    global batch, otherwise True on every rank when it holds on any.

    Args:
        data_samples (Sequence[DataSample]): This rank's batch.
        num_classes (int): ``K``; an absent class counts 0.
        min_samples (int): Defaults to 2 (the released ``check_batch``).
        global_decision (bool): Decide on the global batch.

    Returns:
        bool: Skip the batch.
    """
    counts = batch_class_counts(data_samples, num_classes)[:num_classes]
    if global_decision:
        all_reduce(counts)  # the global batch's counts
        return bool((counts < min_samples).any())
    failed = torch.tensor(int((counts < min_samples).any()))
    all_reduce(failed)  # any rank fails: every rank skips
    return bool(failed.item() > 0)


@LOOPS.register_module()
class DMUETrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` with the released DMUE training's
    evaluation protocol and batch filter.

    * ``val_iters``: besides the evaluation at the end of each epoch
      (``val_interval``), evaluate after every ``val_iters``-th iteration of
      an epoch (1-based, as the released code's ``idx % 200 == 0``; none
      after the last iteration, which the epoch-end evaluation follows).
      :class:`~dmue_mm.hooks.InEpochCheckpointHook` keeps the best of all
      evaluations. The model's train/eval mode of every module is restored
      after an in-epoch evaluation; the released code's switch to eval mode
      is :class:`~dmue_mm.hooks.EvalModeSwitchHook`.
    * ``skip_batches``: skip every batch in which some class has fewer than
      ``min_samples`` samples, an absent class included (the released
      ``check_batch``): no forward pass, no optimiser step (Adam's state is
      untouched), no iteration hooks; the iteration index still advances,
      as the released code's ``enumerate``. As there, an in-epoch
      evaluation due after a skipped batch does not run. The skipped count
      of each epoch is logged.

    Under DDP every rank takes the same decision: with global statistics
    (``global_skip``) on the class counts of the global batch, as one
    process on the whole batch; otherwise a batch is skipped on every rank
    when it fails on any rank (the released DDP script's rule).

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The training dataloader.
        max_epochs (int): Training epochs.
        val_begin (int): First epoch (1-based) that evaluates.
            Defaults to 1.
        val_interval (int): Epoch interval of the epoch-end evaluation.
            Defaults to 1.
        dynamic_intervals (list, optional): As ``EpochBasedTrainLoop``.
        val_iters (int, optional): In-epoch evaluation interval in
            iterations. Defaults to None (epoch ends only).
        skip_batches (bool): Skip batches with a class of fewer than
            ``min_samples`` samples. Defaults to False.
        min_samples (int): Defaults to 2.
        num_classes (int, optional): ``K`` for the check. Defaults to None:
            ``model.head.num_classes``.
        global_skip (bool, optional): Decide on the global batch under DDP.
            Defaults to None: ``model.head.global_stats``.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 max_epochs: int,
                 val_begin: int = 1,
                 val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None,
                 val_iters: Optional[int] = None,
                 skip_batches: bool = False,
                 min_samples: int = 2,
                 num_classes: Optional[int] = None,
                 global_skip: Optional[bool] = None) -> None:
        if val_iters is not None and (not isinstance(val_iters, int)
                                      or val_iters < 1):
            raise ValueError(f'train_cfg.val_iters must be a positive '
                             f'integer or None, got {val_iters!r}')
        super().__init__(runner, dataloader, max_epochs, val_begin,
                         val_interval, dynamic_intervals)
        self.val_iters = val_iters
        self.skip_batches = skip_batches
        self.min_samples = min_samples
        head = getattr(self._model(), 'head', None)
        if num_classes is None:
            num_classes = getattr(head, 'num_classes', None)
        if skip_batches and num_classes is None:
            raise ValueError('train_cfg.skip_batches needs the class count: '
                             'set train_cfg.num_classes')
        self.num_classes = num_classes
        if global_skip is None:
            global_skip = bool(getattr(head, 'global_stats', False))
        self.global_skip = global_skip
        self.skipped_in_epoch = 0
        self.skipped_total = 0

    def _model(self):
        model = self.runner.model
        return model.module if is_model_wrapper(model) else model

    def run_epoch(self) -> None:
        """Iterate one epoch, with the in-epoch evaluations."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        self.skipped_in_epoch = 0
        # the total so far (restored from the checkpoint on resume)
        self.skipped_total = (
            self.runner.message_hub.get_info('skipped_batches') or 0)
        length = len(self.dataloader)
        for idx, data_batch in enumerate(self.dataloader):
            used = self.run_iter(idx, data_batch)
            if used and self._in_epoch_val_due(idx, length):
                self._in_epoch_val(idx + 1)
        if self.skip_batches:
            self.runner.logger.info(
                f'Epoch {self._epoch + 1}: skipped {self.skipped_in_epoch} '
                f'of {length} batches with a class of fewer than '
                f'{self.min_samples} samples ({self.skipped_total} in all)')
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx: int, data_batch: Dict) -> bool:
        """Train on one batch unless it must be skipped.

        Returns:
            bool: Whether the batch was used.
        """
        if self.skip_batches and must_skip(
                data_batch['data_samples'], self.num_classes,
                self.min_samples, self.global_skip):
            self.skipped_in_epoch += 1
            self.skipped_total += 1
            self.runner.message_hub.update_info('skipped_batches',
                                                self.skipped_total)
            self._iter += 1
            return False
        super().run_iter(idx, data_batch)
        return True

    def _in_epoch_val_due(self, idx: int, length: int) -> bool:
        return (self.val_iters is not None
                and self.runner.val_loop is not None
                and self._epoch + 1 >= self.val_begin
                and (idx + 1) % self.val_iters == 0 and idx + 1 < length)

    def _in_epoch_val(self, inner_iter: int) -> None:
        """Evaluate mid-epoch; restore every module's mode afterwards."""
        modes = [(m, m.training) for m in self.runner.model.modules()]
        hub = self.runner.message_hub
        hub.update_info(IN_EPOCH_VAL_KEY, inner_iter)
        try:
            self.runner.val_loop.run()
        finally:
            hub.update_info(IN_EPOCH_VAL_KEY, None)
            for module, training in modes:
                module.training = training
