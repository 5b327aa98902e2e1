"""Training hooks of the plugin."""
from .branch_pruning import BranchPruningHook
from .checkpoint import IN_EPOCH_VAL_KEY, InEpochCheckpointHook
from .checkpoint_check import (PARTIAL_FORMATS, CheckpointCheckHook,
                               check_checkpoint_fits)
from .eval_mode import EvalModeSwitchHook
from .test_metrics_vis import TestMetricsVisHook
from .visualization import ExpressionVisualizationHook, unique_sample_name

__all__ = [
    'BranchPruningHook', 'CheckpointCheckHook', 'EvalModeSwitchHook',
    'ExpressionVisualizationHook', 'IN_EPOCH_VAL_KEY', 'InEpochCheckpointHook',
    'PARTIAL_FORMATS', 'TestMetricsVisHook', 'check_checkpoint_fits',
    'unique_sample_name'
]
