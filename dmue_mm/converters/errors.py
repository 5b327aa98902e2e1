"""Errors of the checkpoint converters (printed as one line by the tools)."""
from dmue_mm.utils.errors import DMUEError

__all__ = ['ConversionError', 'ArchitectureMismatchError']


class ConversionError(DMUEError, ValueError):
    """A checkpoint that cannot be converted: wrong format, inconsistent
    branch or class counts, unknown keys."""


class ArchitectureMismatchError(ConversionError):
    """A checkpoint whose tensors do not fit the target architecture; the
    message names the first mismatching key and its shape."""
