from .dmue_head import DMUEHead, current_epoch
from .mv_softmax_head import MVSoftmaxClsHead
from .pairwise_uncertainty import class_similarity_features

__all__ = [
    'DMUEHead', 'current_epoch', 'class_similarity_features',
    'MVSoftmaxClsHead'
]
