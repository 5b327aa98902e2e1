"""Strict pretrained initialisation (face-recognition weights of the DMUE
recipes)."""
import logging
import os.path as osp
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import _load_checkpoint

from dmue_mm.utils.errors import DMUEError

__all__ = ['StrictPretrainedInit', 'PretrainedError']

CONVERT_HINT = ('python tools/convert.py msceleb mv_epoch_17.pt -o {path} '
                "(the authors' MS-Celeb-1M weights)")


class PretrainedError(DMUEError, ValueError):
    """A pretrained checkpoint that is missing or does not fill a module."""


def _shape(t: torch.Tensor) -> str:
    return '(' + ', '.join(str(s) for s in t.shape) + ')'


@WEIGHT_INITIALIZERS.register_module(name='StrictPretrained')
class StrictPretrainedInit:
    """Load a pretrained checkpoint into a module, strictly.

    MMEngine's ``Pretrained`` loads non-strictly and only logs a warning
    for missing keys, so a wrong ``prefix`` leaves the module at random
    init. This initializer fails instead, with one line
    (:class:`PretrainedError`, which the tools print as ``error: ...``):

    * the file does not exist: naming it and the two ways to make it;
    * a key of the module is missing from the file (under ``prefix``),
      the file has a key the module lacks, or a shape differs: naming the
      first such key.

    ``checkpoint=None`` is the explicit choice of training from scratch:
    nothing is loaded (PyTorch's default init stays, as the original
    without ``pretrained``) and a warning is logged.

    A filled ResNet-family module gets ``zero_init_residual=False``:
    MMPretrain's ResNet re-initialises the last BN of every block after its
    ``init_cfg`` unless the type is MMEngine's ``Pretrained``.

    Example::

        backbone=dict(type='FaceResNet', depth=18, init_cfg=dict(
            type='StrictPretrained',
            checkpoint='pretrain/faceres18_msceleb.pth', prefix='backbone.'))

    Args:
        checkpoint (str, optional): Path of the checkpoint (loaded through
            MMEngine's checkpoint loaders), or None (from scratch).
        prefix (str, optional): Key prefix of the module in the checkpoint,
            e.g. ``'backbone.'``. Defaults to None (the whole file).
        map_location (str): Defaults to ``'cpu'``.
        pretrain_config (str, optional): The plugin's pretraining config
            that writes such a file, named in the missing-file error.
    """

    def __init__(self,
                 checkpoint: Optional[str],
                 prefix: Optional[str] = None,
                 map_location: str = 'cpu',
                 pretrain_config: Optional[str] = None):
        self.checkpoint = checkpoint
        self.prefix = prefix or ''
        self.map_location = map_location
        self.pretrain_config = pretrain_config

    def __call__(self, module: nn.Module) -> None:
        name = type(module).__name__
        if self.checkpoint is None:
            print_log(
                f'{name} trains from scratch: its init_cfg checkpoint is '
                'None, so no pretrained weights are loaded (the published '
                'DMUE numbers start from face-recognition pretraining)',
                logger='current',
                level=logging.WARNING)
            return
        state = self._load(name)
        self._check(module, state, name)
        module.load_state_dict(state, strict=True)
        if hasattr(module, 'zero_init_residual'):
            module.zero_init_residual = False
        print_log(
            f'{name}: all {len(state)} tensors loaded from {self.checkpoint}'
            + (f' (prefix {self.prefix!r})' if self.prefix else ''),
            logger='current')
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _load(self, name: str) -> Dict[str, torch.Tensor]:
        path = self.checkpoint
        if '://' not in path and not osp.isfile(path):
            ways = CONVERT_HINT.format(path=path)
            if self.pretrain_config:
                ways += (f', or train {self.pretrain_config} and copy its '
                         f'last epoch_*.pth to {path}')
            raise PretrainedError(
                f'pretrained checkpoint {path!r} of the {name} not found: '
                f'make it with {ways}; or set the init_cfg checkpoint to '
                'None to train from scratch')
        ckpt = _load_checkpoint(path, map_location=self.map_location)
        if isinstance(ckpt, dict) and isinstance(
                ckpt.get('state_dict'), dict):
            ckpt = ckpt['state_dict']
        if not isinstance(ckpt, dict):
            raise PretrainedError(f'pretrained checkpoint {path!r} holds no '
                                  f'state dict ({type(ckpt).__name__})')
        n = len(self.prefix)
        return {
            k[n:]: v
            for k, v in ckpt.items() if k.startswith(self.prefix)
            and isinstance(v, torch.Tensor)
        } if n else {
            k: v
            for k, v in ckpt.items() if isinstance(v, torch.Tensor)
        }

    def _check(self, module: nn.Module, state: Dict[str, torch.Tensor],
               name: str) -> None:
        path, prefix = self.checkpoint, self.prefix
        expected = module.state_dict()
        missing = [k for k in expected if k not in state]
        if missing:
            found = (f'its first key under {prefix!r} is '
                     f'{prefix + next(iter(state))!r}' if state else
                     f'it has no key starting with {prefix!r}')
            raise PretrainedError(
                f'pretrained checkpoint {path!r} does not fill the {name}: '
                f'no {prefix + missing[0]!r} (the first of {len(missing)} '
                f'missing of {len(expected)} keys; {found}): check the file '
                'and the init_cfg prefix')
        unexpected = [k for k in state if k not in expected]
        if unexpected:
            raise PretrainedError(
                f'pretrained checkpoint {path!r} does not match the {name}: '
                f'{prefix + unexpected[0]!r} is not a key of the model (the '
                f'first of {len(unexpected)}): another architecture?')
        for key, value in expected.items():
            if state[key].shape != value.shape:
                raise PretrainedError(
                    f'pretrained checkpoint {path!r} does not fit the '
                    f'{name}: {prefix + key!r} has shape '
                    f'{_shape(state[key])} in the file and '
                    f'{_shape(value)} in the model (the first mismatch)')

    def _get_init_info(self) -> str:
        return (f'{self.__class__.__name__}: load from {self.checkpoint}' +
                (f' (prefix {self.prefix!r})' if self.prefix else ''))
