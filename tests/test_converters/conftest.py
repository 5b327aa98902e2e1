"""Fixtures of the converter tests."""
from dmue_testing import one_thread  # noqa: F401
