"""Atomic file writing: every writer of the project goes through here.

A file is written to a temporary name in the destination folder and renamed
when complete, so that a killed process never leaves a truncated file behind
(the rename is atomic on POSIX file systems).
"""
import json
import os
import os.path as osp
import uuid
from typing import Any, Callable

__all__ = ['atomic_write', 'write_bytes', 'write_text', 'write_json']


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename
    it to ``path``.

    Args:
        path (str): Destination; parent folders are created.
        write (callable): Writes the content to the path it is given.

    Returns:
        str: ``path``.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex[:8]}')
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return path


def write_bytes(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; returns ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            f.write(data)

    return atomic_write(path, write)


def write_text(path: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode('utf-8'))


def write_json(path: str, obj: Any, indent: int = 2) -> str:
    """Write ``obj`` as JSON to ``path`` atomically; returns ``path``."""
    return write_text(path, json.dumps(obj, indent=indent) + '\n')
