"""The released code's train/eval-mode quirk as a hook."""
from typing import Optional

from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

__all__ = ['EvalModeSwitchHook']


@HOOKS.register_module()
class EvalModeSwitchHook(Hook):
    """Train in eval mode from a given iteration of every epoch to its end.

    The released DMUE training calls ``model.train()`` once per epoch; its
    in-epoch evaluation (after iteration 200) calls ``model.eval()`` and
    never switches back, so the rest of the epoch trains with every
    BatchNorm (trunk, branches, BN-neck) on its frozen running statistics
    and dropout off, while the weights keep being updated. This hook
    reproduces that: before each training iteration whose 0-based index in
    the epoch is ``iters`` or more, it puts the whole model in eval mode.
    MMEngine's epoch loop calls ``model.train()`` at every epoch start, so
    every epoch starts in train mode again.

    Args:
        iters (int, optional): First 0-based iteration of each epoch that
            trains in eval mode. Defaults to 200 (the released code: its
            first in-epoch evaluation follows the 200th step). None turns
            the hook off (train mode throughout, the paper's method).
    """

    priority = 'NORMAL'

    def __init__(self, iters: Optional[int] = 200):
        if iters is not None and (not isinstance(iters, int) or iters < 0):
            raise ValueError(f'EvalModeSwitchHook: iters must be an integer '
                             f'>= 0 or None, got {iters!r}')
        self.iters = iters
        self._switched_epoch: Optional[int] = None

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        """Put the model in eval mode from iteration ``iters`` on."""
        if self.iters is None or batch_idx < self.iters:
            return
        runner.model.eval()
        if self._switched_epoch != runner.epoch:
            self._switched_epoch = runner.epoch
            runner.logger.info(
                f'EvalModeSwitchHook: epoch {runner.epoch + 1} trains in '
                f'eval mode from iteration {batch_idx + 1} on (BatchNorm '
                'statistics frozen, dropout off), as the released code')
