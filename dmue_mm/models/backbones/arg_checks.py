"""Argument checks shared by the ResNet variants of this package."""
from typing import Dict, Iterable

__all__ = ['check_resnet_variant_args']


def check_resnet_variant_args(name: str, depth: int, arch_settings: Dict,
                              kwargs: Dict, unsupported: Iterable[str],
                              depth_hint: str = '') -> None:
    """Reject depths outside ``arch_settings`` and unsupported ResNet keys.

    Args:
        name (str): Backbone type, for the message.
        depth (int): The requested depth.
        arch_settings (dict): The variant's arch table.
        kwargs (dict): The remaining ``ResNet`` keyword arguments.
        unsupported (Iterable[str]): ``ResNet`` arguments the variant does
            not accept with a truthy value.
        depth_hint (str): Appended to the depth error (what to use instead).

    Raises:
        ValueError: Naming the argument and the fix.
    """
    if depth not in arch_settings:
        raise ValueError(f'{name}: depth={depth!r} is not supported; use one '
                         f'of {sorted(arch_settings)}{depth_hint}')
    for key in unsupported:
        if kwargs.get(key):
            raise ValueError(f'{name}: {key} is not supported; remove it from '
                             'the backbone config')
