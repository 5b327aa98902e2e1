"""Write deploy models (target branch only, BN-neck folded) during
training."""
import os
import os.path as osp
from typing import Dict, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from dmue_mm.converters import TEST_DATA_MODES, DeploySpec, DeployWriter

__all__ = ['BranchPruningHook']


@HOOKS.register_module()
class BranchPruningHook(Hook):
    """Prune a DMUE model to a stock MMPretrain classifier while training.

    Whenever MMEngine's ``CheckpointHook`` saves a new best checkpoint
    (``save_best``), and at the end of training, it writes into
    ``<work_dir>/<out_dir>/``:

    * ``deploy.py``: a config of a stock ``ImageClassifier`` (backbone +
      deploy neck + ``LinearClsHead`` with bias; ``custom_imports`` only for
      plugin-only types such as ``FaceResNet``);
    * ``best_<metric>_<epoch|iter>_<n>.pth`` (the name of the best
      checkpoint; the previous one is removed as ``CheckpointHook`` removes
      its own) and ``last.pth``: the target branch only, the BN-neck folded
      into the classifier, no auxiliary branch or uncertainty MLP; tensors
      and plain values only (stock MMEngine loads them with
      ``torch.load(weights_only=True)``).

    It runs after ``CheckpointHook`` (priority ``LOWEST``), so the pruned
    weights are those of the checkpoint just saved. Only the main process
    writes.

    Args:
        out_dir (str): Folder under the work dir (or an absolute path).
            Defaults to ``'deploy'``.
        on_best (bool): Write a deploy model for each new best checkpoint.
            Defaults to True.
        on_train_end (bool): Write ``last.pth`` at the end of training.
            Defaults to True.
        test_data (str): Test data of the deploy config: ``'folder'`` (a
            stock image-folder ``CustomDataset`` replaces a plugin dataset
            such as the LMDB) or ``'plugin'`` (keep the training config's
            test dataset; the config then imports the plugin). Defaults to
            ``'folder'``.
        test_root (str, optional): ``data_root`` of the deploy config's test
            dataset. Defaults to None (the training config's for a stock
            dataset, else ``data/deploy_test``).
    """

    priority = 'LOWEST'

    def __init__(self,
                 out_dir: str = 'deploy',
                 on_best: bool = True,
                 on_train_end: bool = True,
                 test_data: str = 'folder',
                 test_root: Optional[str] = None):
        if test_data not in TEST_DATA_MODES:
            raise ValueError(f'BranchPruningHook: test_data must be one of '
                             f'{TEST_DATA_MODES}, got {test_data!r}')
        self.out_dir = out_dir
        self.on_best = on_best
        self.on_train_end = on_train_end
        self.test_data = test_data
        self.test_root = test_root
        self._best: Dict[str, Optional[str]] = {}
        self._writer: Optional[DeployWriter] = None

    # ------------------------------------------------------------------
    def before_train(self, runner) -> None:
        """Remember the best checkpoints known so far (after a resume)."""
        self._best = self._best_checkpoints(runner)

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Write a deploy model for every best checkpoint that changed."""
        if not self.on_best:
            return
        for key, path in self._best_checkpoints(runner).items():
            previous = self._best.get(key)
            if path is None or path == previous:
                continue
            self._best[key] = path
            if not is_main_process():
                continue
            name = osp.splitext(osp.basename(path))[0]
            self._write(runner, name)
            if previous:
                old = osp.join(
                    self._folder(runner),
                    osp.splitext(osp.basename(previous))[0] + '.pth')
                if osp.isfile(old):
                    os.remove(old)

    def after_train(self, runner) -> None:
        """Write ``last.pth``."""
        if self.on_train_end and is_main_process():
            self._write(runner, 'last')

    # ------------------------------------------------------------------
    @staticmethod
    def _best_checkpoints(runner) -> Dict[str, Optional[str]]:
        """``best_ckpt[_<metric>]`` entries of the message hub."""
        info = runner.message_hub.runtime_info
        return {
            key: value
            for key, value in info.items()
            if key == 'best_ckpt' or key.startswith('best_ckpt_')
        }

    def _folder(self, runner) -> str:
        return osp.join(runner.work_dir, self.out_dir)

    def _model(self, runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _get_writer(self, runner) -> DeployWriter:
        if self._writer is None:
            model = self._model(runner)
            if not hasattr(model, 'adapter') or not hasattr(model, 'head'):
                raise TypeError(
                    'BranchPruningHook needs a DMUEClassifier, got '
                    f'{type(model).__name__}: remove the hook from '
                    'custom_hooks')
            self._writer = DeployWriter(
                DeploySpec.from_model(model, runner.cfg.model),
                data_cfg=runner.cfg,
                classes=_classes(runner),
                test_data=self.test_data,
                test_root=self.test_root,
                source=f'BranchPruningHook, {osp.basename(runner.work_dir)}')
        return self._writer

    def _write(self, runner, name: str) -> None:
        writer = self._get_writer(runner)
        files = writer.write(
            self._model(runner).state_dict(),
            self._folder(runner),
            name,
            extra_meta=dict(epoch=runner.epoch, iter=runner.iter))
        runner.logger.info(
            f'BranchPruningHook: deploy model {files.checkpoint}'
            f' (config {files.config})')


def _classes(runner):
    """Class names of the training (else validation) dataset."""
    for loop in ('train_loop', 'val_loop'):
        try:
            dataset = getattr(runner, loop).dataloader.dataset
        except (AttributeError, RuntimeError):
            continue
        classes = getattr(dataset, 'metainfo', {}).get('classes')
        if classes:
            return list(classes)
    return None
