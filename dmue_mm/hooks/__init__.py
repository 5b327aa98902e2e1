"""Training hooks of the plugin."""
from .branch_pruning import BranchPruningHook
from .test_metrics_vis import TestMetricsVisHook

__all__ = ['BranchPruningHook', 'TestMetricsVisHook']
