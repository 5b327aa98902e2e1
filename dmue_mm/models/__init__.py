from . import backbones, classifiers, heads, losses, utils  # noqa: F401

__all__ = []
