"""A recipe's total batch over any number of processes."""
import os
from typing import Any, Dict, Optional

from mmengine.config import Config
from mmengine.logging import print_log

from dmue_mm.utils.errors import CLIError

__all__ = ['launched_world_size', 'apply_total_batch_size']

#: world-size variable of each launcher (read before MMEngine starts it)
_WORLD_SIZE_ENV = dict(
    pytorch='WORLD_SIZE', slurm='SLURM_NTASKS', mpi='OMPI_COMM_WORLD_SIZE')


def launched_world_size(launcher: str) -> int:
    """Number of processes the launcher started (1 for ``'none'``)."""
    variable = _WORLD_SIZE_ENV.get(launcher)
    return int(os.environ.get(variable, 1)) if variable else 1


def apply_total_batch_size(cfg: Config,
                           world_size: int,
                           cfg_options: Optional[Dict[str, Any]] = None
                           ) -> None:
    """Split the config's ``total_batch_size`` over the processes.

    A recipe with ``total_batch_size = B`` trains a batch of ``B`` however
    many processes run: each takes ``B / k`` samples
    (``train_dataloader.batch_size``) and, with ``k > 1``, the head computes
    its pairwise statistics over the global batch
    (``model.head.global_stats=True``); the learning rate is unchanged
    (``auto_scale_lr.base_batch_size`` is ``B``, so ``--auto-scale-lr``
    changes nothing). ``total_batch_size=None`` keeps the per-process
    ``train_dataloader.batch_size``.

    Args:
        cfg (Config): The config, changed in place.
        world_size (int): Number of processes.
        cfg_options (dict, optional): The ``--cfg-options``; setting
            ``train_dataloader.batch_size`` there conflicts with a total
            batch.

    Raises:
        CLIError: ``B`` not divisible by ``k``, or both batch sizes set.
    """
    total = cfg.get('total_batch_size', None)
    if total is None:
        return
    if 'train_dataloader.batch_size' in (cfg_options or {}):
        raise CLIError(
            f'the config trains a total batch of {total} '
            '(total_batch_size): set total_batch_size=N instead of '
            'train_dataloader.batch_size, or total_batch_size=None to set '
            'the per-process batch')
    if total % world_size:
        raise CLIError(
            f'total_batch_size={total} is not divisible by the {world_size} '
            'processes: run a divisor of it, or set total_batch_size')
    cfg.train_dataloader.batch_size = total // world_size
    if world_size > 1:
        cfg.model.head.global_stats = True
    print_log(
        f'total batch {total}: {world_size} process(es) x '
        f'{total // world_size}' +
        (', pairwise statistics over the global batch'
         if world_size > 1 else ''),
        logger='current')
