"""Parsing of ``<name> <label>`` list files (RAF-DB, generic lists, the
original DMUE list)."""
from typing import List, NamedTuple

from dmue_mm.utils.errors import DataError

__all__ = ['LabelLine', 'read_label_lines']


class LabelLine(NamedTuple):
    """One ``<name> <label>`` line: 1-based line number, name, label."""
    line: int
    name: str
    label: int


def read_label_lines(path: str,
                     expected: str = '<path> <label>') -> List[LabelLine]:
    """Read a list file of ``<name> <label>`` lines.

    A line is split on its last run of white space, so names may contain
    spaces and labels may have several digits. Empty lines and lines
    starting with ``#`` are skipped.

    Args:
        path (str): The list file.
        expected (str): The line format, for error messages.

    Returns:
        list[LabelLine]: The lines, in file order.

    Raises:
        DataError: Missing file or malformed line (naming file and line).
    """
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except FileNotFoundError as exc:
        raise DataError(f'list file {path!r} not found: check the path (lines '
                        f'"{expected}")') from exc
    parsed = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith('#'):
            continue
        parts = text.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
            raise DataError(f'{path}:{number}: expected "{expected}" with an '
                            f'integer label, got {text!r}; fix the line')
        parsed.append(LabelLine(number, parts[0], int(parts[1])))
    return parsed
