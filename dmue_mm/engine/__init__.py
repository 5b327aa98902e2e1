from .optimizers import DMUEOptimWrapperConstructor
from .schedulers import GroupStepLR

__all__ = ['DMUEOptimWrapperConstructor', 'GroupStepLR']
