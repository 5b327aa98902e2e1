"""Per-group step-table learning-rate schedule (the original's ``get_lr``)."""
from typing import Dict, List, Sequence, Tuple

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmpretrain.registry import PARAM_SCHEDULERS

__all__ = ['GroupStepLR']


@PARAM_SCHEDULERS.register_module()
class GroupStepLR(LRSchedulerMixin, _ParamScheduler):
    """Piecewise-constant learning rate, one table per named param group.

    Each group's lr is its initial lr times the factor of the last table
    entry whose start is <= the current epoch (or iteration with
    ``by_epoch=False``). The groups are matched by their ``name`` key, which
    :class:`~dmue_mm.engine.DMUEOptimWrapperConstructor` sets; unnamed
    groups (MMEngine's record of the optimiser-wide lr, which the logs show)
    follow the first table.

    Example (the DMUE recipe, lr 1e-4 and 1e-3)::

        dict(type='GroupStepLR', by_epoch=True, steps=dict(
            trunk=[(0, 1.0), (6, 0.5), (12, 0.1), (22, 0.5), (25, 0.1)],
            classifier=[(0, 1.0), (4, 0.5), (8, 0.1), (14, 0.01),
                        (22, 0.05), (25, 0.01)]))

    Args:
        optimizer: Wrapped optimizer whose param groups have a ``name``.
        steps (dict): ``{group name: [(start, factor), ...]}``, starts
            increasing from 0.
        begin, end, last_step, by_epoch, verbose: As MMEngine's schedulers.
    """

    def __init__(self,
                 optimizer,
                 steps: Dict[str, Sequence[Tuple[int, float]]],
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False):
        self.tables = {
            name: _check_table(name, table)
            for name, table in steps.items()
        }
        if not self.tables:
            raise ValueError('param_scheduler.steps must name at least one '
                             'param group')
        # MMEngine's OptimWrapper adds an unnamed group with the optimiser's
        # own settings (the logged ``lr``): it follows the first table.
        self.default = next(iter(self.tables))
        names = [group.get('name') for group in optimizer.param_groups]
        missing = [n for n in names if n and n not in self.tables]
        if missing:
            raise ValueError(
                f'GroupStepLR has no table for the param groups {missing}: '
                f'set param_scheduler.steps for each of {names} (groups are '
                'named by DMUEOptimWrapperConstructor)')
        super().__init__(
            optimizer,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    def _get_value(self) -> List[float]:
        return [
            group['initial_lr'] *
            _factor(self.tables[group.get('name') or self.default],
                    self.last_step)
            for group in self.optimizer.param_groups
        ]


def _factor(table: List[Tuple[int, float]], step: int) -> float:
    factor = table[0][1]
    for start, value in table:
        if start > step:
            break
        factor = value
    return factor


def _check_table(name: str, table) -> List[Tuple[int, float]]:
    table = [(int(start), float(value)) for start, value in table]
    starts = [start for start, _ in table]
    if not table or starts[0] != 0 or starts != sorted(set(starts)):
        raise ValueError(
            f'param_scheduler.steps.{name} must be [(0, factor), '
            f'(start, factor), ...] with increasing starts, got {table}')
    return table
