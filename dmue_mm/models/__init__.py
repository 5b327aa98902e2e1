from . import backbones, heads, losses  # noqa: F401  register

__all__ = []
