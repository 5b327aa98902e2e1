"""Training hooks of the plugin."""
from .branch_pruning import BranchPruningHook
from .checkpoint import IN_EPOCH_VAL_KEY, InEpochCheckpointHook
from .eval_mode import EvalModeSwitchHook
from .test_metrics_vis import TestMetricsVisHook

__all__ = [
    'BranchPruningHook', 'EvalModeSwitchHook', 'InEpochCheckpointHook',
    'IN_EPOCH_VAL_KEY', 'TestMetricsVisHook'
]
