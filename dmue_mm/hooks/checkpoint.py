"""Best-checkpoint keeping for evaluations inside an epoch."""
from mmengine.hooks import CheckpointHook
from mmpretrain.registry import HOOKS

__all__ = ['InEpochCheckpointHook', 'IN_EPOCH_VAL_KEY']

#: message-hub runtime key holding the 1-based iteration of the epoch during
#: an in-epoch validation (None otherwise); set by ``DMUETrainLoop``.
IN_EPOCH_VAL_KEY = 'in_epoch_val_iter'


@HOOKS.register_module()
class InEpochCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` that also keeps the best checkpoint of
    the evaluations :class:`~dmue_mm.engine.DMUETrainLoop` runs inside an
    epoch (``val_iters``).

    With ``by_epoch=True`` MMEngine names a best checkpoint after the epoch
    only, so an in-epoch best would take the name of the previous epoch's
    best and be re-saved over that epoch's regular checkpoint. Here an
    in-epoch best is ``best_<metric>_epoch_<e>_iter_<i>.pth`` (``e`` the
    1-based epoch, ``i`` its 1-based iteration, as the released code's
    ``ep{e-1}_b{i}``); the regular ``epoch_<n>.pth`` checkpoints stay those
    of the epoch ends. ``BranchPruningHook`` writes the deploy model of
    every new best under the same name. Arguments: as ``CheckpointHook``.
    """

    def _save_best_checkpoint(self, runner, metrics) -> None:
        inner = runner.message_hub.get_info(IN_EPOCH_VAL_KEY)
        if inner is None or not self.by_epoch:
            super()._save_best_checkpoint(runner, metrics)
            return
        saved = self.filename_tmpl, self.last_ckpt
        # no placeholder: CheckpointHook formats it with the epoch count
        self.filename_tmpl = f'epoch_{runner.epoch + 1}_iter_{inner}.pth'
        self.last_ckpt = None  # do not re-save the last epoch's checkpoint
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.filename_tmpl, self.last_ckpt = saved
