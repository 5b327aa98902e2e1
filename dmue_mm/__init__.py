"""DMUE for MMPretrain: latent distribution mining and pairwise uncertainty
estimation for facial expression recognition.

Importing the package registers every plugin module in MMPretrain's
registries and applies the compatibility shims of :mod:`dmue_mm.compat`.
Configs load it with
``custom_imports = dict(imports=['dmue_mm'], allow_failed_imports=False)``.
"""
from .compat import apply_import_time_shims
from .version import __version__

apply_import_time_shims()

from . import datasets, engine, evaluation, hooks, models  # noqa: E402,F401

__all__ = ['__version__']
