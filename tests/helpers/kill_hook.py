"""Test-only hook that kills its own process at a given training iteration.

Used to simulate a crash mid-epoch (SIGKILL: no cleanup, no final checkpoint)
so that ``--resume auto`` can be checked against an uninterrupted run.
"""
import os
import signal

from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """Send SIGKILL to this process after training iteration ``kill_iter``.

    Args:
        kill_iter (int): 1-based global iteration after which to die.
    """

    def __init__(self, kill_iter: int):
        self.kill_iter = kill_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.kill_iter:
            os.kill(os.getpid(), signal.SIGKILL)
