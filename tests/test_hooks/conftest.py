"""Fixtures of the hook tests."""
from test_converters.deploy_helpers import one_thread  # noqa: F401
