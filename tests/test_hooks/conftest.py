"""Fixtures of the hook tests."""
from dmue_testing import one_thread  # noqa: F401
