from .mv_softmax_head import MVSoftmaxClsHead

__all__ = ['MVSoftmaxClsHead']
