"""Training hooks of the plugin."""
from .branch_pruning import BranchPruningHook

__all__ = ['BranchPruningHook']
