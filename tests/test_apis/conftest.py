"""Fixtures of the inference API tests."""
from dmue_testing import one_thread  # noqa: F401
