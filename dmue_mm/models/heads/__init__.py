from .batch_gather import BatchGather
from .class_layout import ClassLayout
from .dmue_head import (BranchOutputs, DMUEHead, DMUETerms,
                        class_similarity_features)
from .mv_softmax_head import MVSoftmaxClsHead

__all__ = [
    'BatchGather', 'BranchOutputs', 'ClassLayout', 'DMUEHead', 'DMUETerms',
    'MVSoftmaxClsHead', 'class_similarity_features'
]
