"""Fixtures of the dataset tests: small LMDBs written with LMDBWriter.

This folder is a package (``__init__.py``), so this module is
``test_datasets.conftest`` and does not shadow ``tests/conftest.py``, which
other tests import as ``conftest``.
"""
import pytest

from .fakes import write_lmdb


@pytest.fixture(scope='session')
def small_lmdb(tmp_path_factory):
    """A 4-class PNG LMDB (train 3/class, test 2/class) and its images."""
    path = str(tmp_path_factory.mktemp('lmdb') / 'small.lmdb')
    return path, write_lmdb(path)
