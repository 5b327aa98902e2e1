from .dmue_classifier import DMUEClassifier

__all__ = ['DMUEClassifier']
