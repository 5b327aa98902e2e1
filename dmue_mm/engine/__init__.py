from .loops import DMUETrainLoop, batch_class_counts, must_skip
from .optimizers import DMUEOptimWrapperConstructor
from .pretrained import PretrainedError, StrictPretrainedInit
from .schedulers import GroupStepLR
from .total_batch import apply_total_batch_size, launched_world_size

__all__ = [
    'DMUEOptimWrapperConstructor', 'GroupStepLR', 'DMUETrainLoop',
    'batch_class_counts', 'must_skip', 'StrictPretrainedInit',
    'PretrainedError', 'apply_total_batch_size', 'launched_world_size'
]
