"""Reading foreign checkpoints, checking them against a model, and writing
checkpoints that stock MMEngine can load.

Files a user did not produce (the original DMUE snapshots, its converted
weights, the MS-Celeb-1M pretraining checkpoints) are read with
``torch.load(weights_only=True)``: they are bare tensor dicts (or a dict of
tensors and ints), which the safe loader accepts. Everything written here
holds only tensors and plain Python values, so that stock MMEngine on
torch >= 2.6 (``weights_only=True`` by default) loads it without the plugin.
"""
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch

from dmue_mm.utils.fileio import atomic_write
from .errors import ArchitectureMismatchError, ConversionError

__all__ = [
    'load_foreign', 'strip_prefix', 'shape_str', 'check_state_dict',
    'to_plain', 'save_checkpoint'
]


def load_foreign(path: str) -> Any:
    """Load a checkpoint the user did not write, with the safe unpickler.

    Args:
        path (str): The file.

    Returns:
        The loaded object (tensors on the CPU).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ConversionError: If it is not a plain tensor checkpoint.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} not found: check the '
                                'path')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().split('\n')[0]
        raise ConversionError(
            f'{path}: torch.load(weights_only=True) refused it ({reason}); '
            'original DMUE files are bare tensor dicts. A checkpoint written '
            "by this plugin's training runs is converted with the 'deploy' "
            'subcommand') from exc
    except (RuntimeError, EOFError, OSError) as exc:
        reason = str(exc).strip().split('\n')[0]
        raise ConversionError(f'{path}: not a readable PyTorch checkpoint '
                              f'({reason})') from exc


def strip_prefix(state: Mapping[str, torch.Tensor],
                 prefix: str = 'module.') -> 'OrderedDict[str, torch.Tensor]':
    """Remove ``prefix`` from every key that starts with it (DataParallel /
    DDP snapshots); other keys are kept as they are."""
    return OrderedDict(
        (key[len(prefix):] if key.startswith(prefix) else key, value)
        for key, value in state.items())


def shape_str(shape) -> str:
    """``(512, 256, 3, 3)``; a scalar is ``()``."""
    return '(' + ', '.join(str(int(s)) for s in shape) + ')'


def check_state_dict(
        expected: Mapping[str, torch.Tensor],
        state: Mapping[str, torch.Tensor],
        what: str,
        source_name: Optional[Callable[[str], str]] = None,
        may_miss: Optional[Callable[[str], bool]] = None) -> None:
    """Check that ``state`` has exactly the keys and shapes of ``expected``.

    Keys are visited in the checkpoint's order, then the missing ones in the
    model's order; the first problem is reported.

    Args:
        expected (Mapping): The model's state dict (keys -> tensors).
        state (Mapping): The converted checkpoint (same key space).
        what (str): What is checked, for the message (file and target).
        source_name (callable, optional): Maps a converted key back to the
            key in the user's file, for the message.
        may_miss (callable, optional): True for the model's keys that
            ``state`` may lack (they keep their initialisation).

    Raises:
        ArchitectureMismatchError: Naming the first mismatching key.
    """
    name = source_name or (lambda key: key)

    def described(key: str) -> str:
        original = name(key)
        return (f"'{original}'"
                if original == key else f"'{original}' (-> '{key}')")

    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ArchitectureMismatchError(
                f'{what}: key {described(key)} holds a '
                f'{type(value).__name__}, not a tensor')
        if key not in expected:
            raise ArchitectureMismatchError(
                f'{what}: unexpected key {described(key)} with shape '
                f'{shape_str(value.shape)}; the model has no such tensor')
        want = expected[key].shape
        if value.shape != want:
            raise ArchitectureMismatchError(
                f'{what}: key {described(key)} has shape '
                f'{shape_str(value.shape)}, the model expects '
                f'{shape_str(want)}')
    for key, value in expected.items():
        if key not in state and not (may_miss and may_miss(key)):
            raise ArchitectureMismatchError(
                f'{what}: missing key {described(key)} of shape '
                f'{shape_str(value.shape)}')


_PLAIN = (str, int, float, bool, type(None))


def to_plain(value: Any) -> Any:
    """Nested plain Python values only (dict/list/str/int/float/bool/None):
    numpy and tensor values become numbers or lists, tuples lists, anything
    else its ``str``. The result unpickles with ``weights_only=True``."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, _PLAIN):
        return value
    return str(value)


def save_checkpoint(checkpoint: Dict[str, Any], path: str) -> str:
    """``torch.save`` ``checkpoint`` (tensors and plain values) atomically
    (see :func:`dmue_mm.utils.fileio.atomic_write`); returns ``path``."""
    return atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))
