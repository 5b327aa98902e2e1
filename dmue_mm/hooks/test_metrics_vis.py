"""Send test metrics to the visualizer (TensorBoard and other backends)."""
import numbers
from typing import Dict, Optional

from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class TestMetricsVisHook(Hook):
    """Add the scalar test metrics to ``runner.visualizer``.

    MMEngine's ``LoggerHook`` sends training and validation scalars to the
    visualizer's backends but writes test metrics only to the console and
    the JSON log; with this hook ``tools/test.py --vis-backend tensorboard``
    shows them in TensorBoard too (step 0, the tags of the metrics).
    ``tools/test.py`` registers it.
    """

    priority = 'BELOW_NORMAL'

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        scalars = {
            key: float(value)
            for key, value in (metrics or {}).items()
            if isinstance(value, numbers.Real) or (
                getattr(value, 'ndim', None) == 0)
        }
        if scalars:
            runner.visualizer.add_scalars(scalars, step=0)
