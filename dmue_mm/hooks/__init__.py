"""Training hooks of the plugin."""
from .branch_pruning import BranchPruningHook
from .checkpoint_check import (PARTIAL_FORMATS, CheckpointCheckHook,
                               check_checkpoint_fits)
from .visualization import ExpressionVisualizationHook, unique_sample_name

__all__ = [
    'BranchPruningHook', 'CheckpointCheckHook', 'PARTIAL_FORMATS',
    'check_checkpoint_fits', 'ExpressionVisualizationHook',
    'unique_sample_name'
]
