"""User-facing error types.

Errors a user can fix (a missing file, a bad label, an unknown config key)
derive from :class:`DMUEError`; the tools print them as one line that names
the file and the fix, instead of a traceback.
"""

__all__ = ['DMUEError', 'CLIError', 'DataError']


class DMUEError(Exception):
    """Base class of the errors that a user can fix."""


class CLIError(DMUEError, ValueError):
    """A bad command-line argument, config file or config key."""


class DataError(DMUEError, ValueError):
    """Bad input data: a missing, truncated or inconsistent dataset file."""
