"""Fixtures of the inference API tests."""
from test_converters.deploy_helpers import one_thread  # noqa: F401
