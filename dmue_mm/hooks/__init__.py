"""Training hooks of the plugin."""
from .branch_pruning import BranchPruningHook
from .visualization import ExpressionVisualizationHook, unique_sample_name

__all__ = [
    'BranchPruningHook', 'ExpressionVisualizationHook', 'unique_sample_name'
]
