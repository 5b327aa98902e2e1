"""Compatibility shims for the OpenMMLab stack on torch >= 2.6 and numpy 2.

This is the one place where the plugin works around breakages of MMEngine,
MMCV and MMPretrain on the pinned stack (``docs/stack.md`` lists them).
Importing ``dmue_mm`` applies the import-time shims; the tools call
:func:`adapt_cfg_to_machine` for the run-time ones.

Shims:

(a) ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, which
    rejects checkpoints written by MMEngine's Runner (they pickle
    ``HistoryBuffer`` and numpy objects). :func:`install_checkpoint_loader`
    replaces MMEngine's local-file loader with :func:`load_local_checkpoint`,
    which keeps ``weights_only=True`` and allows exactly the extra types the
    Runner writes (:data:`RUNNER_SAFE_GLOBALS`), so that resume,
    ``load_from``, ``tools/test.py`` and ``ImageClassificationInferencer``
    work again while a file holding anything else is refused (nothing from
    it runs). Trusted legacy files load with full unpickling only after an
    explicit opt-in (``--trust-checkpoint`` or ``DMUE_TRUST_CHECKPOINT=1``).
(b) ``mmcv.adjust_hue`` computes ``np.uint8(hue_factor * 255)``, which raises
    ``OverflowError`` for negative factors under numpy 2 (NEP 50).
    :func:`patch_adjust_hue` replaces every public name of the function with
    one that wraps the shift modulo 256, as numpy 1 silently did.
(c) MMEngine's distributed init calls ``torch.cuda.set_device`` and wraps the
    model with ``device_ids=[local_rank]``; neither works without a GPU.
    :func:`adapt_cfg_to_machine` switches a CPU-only run to gloo and
    ``device_ids=None``. GPU runs are left unchanged.
(d) ``AmpOptimWrapper`` refuses to run without a GPU.
    :class:`BF16AmpOptimWrapper` trains under bfloat16 autocast (no loss
    scaling needed) and
    :func:`adapt_cfg_to_machine` selects it for ``--amp`` on CPU; on GPU the
    stock fp16 ``AmpOptimWrapper`` with dynamic loss scaling is used, exactly
    as MMPretrain does.
(e) MMEngine resolves ``_base_ = 'pkg::path'`` only for the OpenMMLab
    packages it lists, and through ``get_installed_path``, which misses an
    editable install. :func:`patch_config_package` makes
    ``'dmue_mm::dmue/res18_rafdb.py'`` read the configs shipped in the
    imported package (``dmue_mm/.mim/configs``, MMPretrain's layout: a
    symlink to ``configs/`` in the repository, copied into a wheel), as the
    repository's own bases are read.
"""
import os
import os.path as osp
import pickle
from contextlib import contextmanager
from typing import Any, Callable, List, Optional, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import HistoryBuffer
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast
from mmengine.runner.checkpoint import CheckpointLoader
from PIL import Image

from mmpretrain.registry import OPTIM_WRAPPERS

from dmue_mm.utils.errors import DMUEError

__all__ = [
    'TRUST_CHECKPOINT_ENV', 'RUNNER_SAFE_GLOBALS', 'UnsafeCheckpointError',
    'install_checkpoint_loader', 'load_local_checkpoint', 'adjust_hue',
    'patch_adjust_hue', 'BF16AmpOptimWrapper', 'adapt_cfg_to_machine',
    'CONFIG_PREFIX', 'packaged_configs_dir', 'patch_config_package',
    'apply_import_time_shims'
]


# --------------------------------------------------------------------------
# (a) torch.load(weights_only=True) vs. MMEngine checkpoints
# --------------------------------------------------------------------------
#: Set to ``1`` to unpickle local checkpoints fully (trusted legacy files).
TRUST_CHECKPOINT_ENV = 'DMUE_TRUST_CHECKPOINT'


class UnsafeCheckpointError(DMUEError, ValueError):
    """A checkpoint that holds objects other than tensors and the types
    MMEngine's Runner writes; it is not unpickled."""


def _history_buffer_method(owner: Any, name: str) -> Callable:
    """``getattr`` restricted to the statistics methods of
    ``HistoryBuffer``.

    ``HistoryBuffer.__getstate__`` stores its statistics methods (``min``,
    ``max``, ``current``, ``mean``), which pickle writes as
    ``builtins.getattr(HistoryBuffer, 'min')``. This stands in for
    ``getattr`` during a safe load and reaches nothing else.
    """
    if owner is not HistoryBuffer or name not in ('min', 'max', 'current',
                                                  'mean'):
        raise pickle.UnpicklingError(
            f'getattr({getattr(owner, "__name__", type(owner).__name__)}, '
            f'{name!r}) is not an allowed global')
    return getattr(HistoryBuffer, name)


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """numpy arrays, scalars and dtypes (numpy 2 names, and the numpy 1
    names that older checkpoints hold)."""
    multiarray = np._core.multiarray
    dtype_classes = [
        cls for cls in vars(np.dtypes).values()
        if isinstance(cls, type) and issubclass(cls, np.dtype)
    ]
    return [
        np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'), *dtype_classes
    ]


#: What MMEngine's Runner pickles besides tensors and plain Python values:
#: the message hub's ``HistoryBuffer`` (with its statistics methods) and
#: numpy arrays, scalars and dtypes. Types only, no general callable.
RUNNER_SAFE_GLOBALS = [
    HistoryBuffer, (_history_buffer_method, 'builtins.getattr'),
    *_numpy_globals()
]


def load_local_checkpoint(filename: str,
                          map_location: Optional[str] = None) -> dict:
    """Load a local checkpoint safely.

    Same contract as MMEngine's ``load_from_local``, with
    ``weights_only=True`` and :data:`RUNNER_SAFE_GLOBALS` allowed during
    the load. With ``DMUE_TRUST_CHECKPOINT=1`` (``--trust-checkpoint`` of
    the tools) the file is unpickled fully instead.

    Args:
        filename (str): Local path, ``~`` is expanded.
        map_location (str, optional): Passed to :func:`torch.load`.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: If the file does not exist.
        UnsafeCheckpointError: If it holds any other object.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found: '
                                'check the path')
    if os.environ.get(TRUST_CHECKPOINT_ENV) == '1':
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(RUNNER_SAFE_GLOBALS):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[-1].split('. Please use')[0]
        raise UnsafeCheckpointError(
            f'checkpoint {filename!r} holds objects other than tensors and '
            f'what MMEngine\'s Runner writes ({reason}); it was not loaded. '
            'Only if you trust the file (e.g. written by an older stack), '
            f'pass --trust-checkpoint or set {TRUST_CHECKPOINT_ENV}=1 to '
            'unpickle it fully') from exc


def install_checkpoint_loader() -> None:
    """Make MMEngine load local checkpoints with
    :func:`load_local_checkpoint`."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)


# --------------------------------------------------------------------------
# (b) mmcv.adjust_hue on numpy 2
# --------------------------------------------------------------------------
def _hue_shift(hue_factor: float) -> np.uint8:
    # Truncate toward zero like the C cast numpy 1 used, then wrap to uint8.
    return np.uint8(int(hue_factor * 255) % 256)


def adjust_hue(img: np.ndarray,
               hue_factor: float,
               backend: Optional[str] = None) -> np.ndarray:
    """Drop-in replacement for ``mmcv.adjust_hue`` that works on numpy 2.

    Args:
        img (ndarray): BGR image, 2 or 3 dims.
        hue_factor (float): Shift of the hue channel in [-0.5, 0.5].
        backend (str, optional): ``'cv2'`` or ``'pillow'``; defaults to mmcv's
            global image backend.

    Returns:
        ndarray: The hue-adjusted image, same dtype as the input.
    """
    import mmcv.image.io as mmcv_io
    if backend is None:
        backend = mmcv_io.imread_backend
    if backend not in ('cv2', 'pillow'):
        raise ValueError(f'backend: {backend} is not supported. '
                         "Supported backends are 'cv2', 'pillow'")
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
    if not (isinstance(img, np.ndarray) and img.ndim in (2, 3)):
        raise TypeError('img should be ndarray with dim=[2 or 3].')
    shift = _hue_shift(hue_factor)

    if backend == 'pillow':
        assert img.dtype == np.uint8, 'Pillow backend only support uint8 type'
        pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
        h, s, v = pil_image.convert('HSV').split()
        np_h = np.array(h, dtype=np.uint8)
        np_h += shift  # uint8 arithmetic wraps around the hue circle
        h = Image.fromarray(np_h, 'L')
        pil_image = Image.merge('HSV', (h, s, v)).convert('RGB')
        return np.array(pil_image, dtype=img.dtype)[..., ::-1]

    dtype = img.dtype
    hsv_img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
    h, s, v = cv2.split(hsv_img)
    h = h.astype(np.uint8)
    h += shift
    hsv_img = cv2.merge([h, s, v])
    return cv2.cvtColor(hsv_img, cv2.COLOR_HSV2BGR_FULL).astype(dtype)


def patch_adjust_hue() -> None:
    """Replace every public name of ``mmcv.adjust_hue`` with
    :func:`adjust_hue`."""
    import mmcv
    import mmcv.image
    import mmcv.image.photometric
    for module in (mmcv, mmcv.image, mmcv.image.photometric):
        module.adjust_hue = adjust_hue


# --------------------------------------------------------------------------
# (d) mixed precision without a GPU
# --------------------------------------------------------------------------
@OPTIM_WRAPPERS.register_module()
class BF16AmpOptimWrapper(OptimWrapper):
    """Mixed-precision training under bfloat16 autocast.

    bfloat16 has the exponent range of float32, so no loss scaling is needed.
    It runs on CPU (where MMEngine's ``AmpOptimWrapper`` refuses to start) and
    on GPUs that support bfloat16, also under DDP.

    Args:
        **kwargs: Passed to :class:`mmengine.optim.OptimWrapper`.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Enter gradient-accumulation handling and bf16 autocast."""
        params = next(model.parameters(), None)
        device_type = params.device.type if params is not None else 'cpu'
        with super().optim_context(model), autocast(
                device_type=device_type, dtype=torch.bfloat16):
            yield


# --------------------------------------------------------------------------
# (c) + (d): adapt a config to the machine it runs on
# --------------------------------------------------------------------------
def _gpu_available() -> bool:
    return torch.cuda.is_available()


def adapt_cfg_to_machine(cfg: Config,
                         amp: bool = False,
                         gpu_available: Optional[Callable[[], bool]] = None
                         ) -> Config:
    """Adapt distributed and mixed-precision settings to this machine.

    On a machine with a GPU the result is what MMPretrain's tools would do:
    ``--amp`` selects ``AmpOptimWrapper`` with dynamic loss scaling and DDP is
    untouched. Without a GPU, a distributed launch uses gloo with
    ``device_ids=None`` (the process group is initialised here, so that
    MMEngine skips its ``torch.cuda.set_device`` call), and ``--amp`` uses
    :class:`BF16AmpOptimWrapper`.

    Args:
        cfg (Config): The config, modified in place.
        amp (bool): Whether ``--amp`` was requested.
        gpu_available (callable, optional): Probe for a usable GPU; defaults
            to ``torch.cuda.is_available``. Tests pass their own.

    Returns:
        Config: ``cfg``.
    """
    has_gpu = (gpu_available or _gpu_available)()
    if amp and cfg.get('optim_wrapper') is not None:
        if has_gpu:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:
            cfg.optim_wrapper.type = 'BF16AmpOptimWrapper'
            cfg.optim_wrapper.pop('loss_scale', None)
    if cfg.get('launcher', 'none') != 'none' and not has_gpu:
        env_cfg = cfg.setdefault('env_cfg', ConfigDict())
        env_cfg.setdefault('dist_cfg', ConfigDict())['backend'] = 'gloo'
        wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(
            type='MMDistributedDataParallel')
        wrapper['device_ids'] = None
        wrapper.setdefault('broadcast_buffers', False)
        cfg.model_wrapper_cfg = wrapper
        _init_cpu_process_group(cfg.launcher)
    return cfg


def _init_cpu_process_group(launcher: str) -> None:
    """Initialise a gloo process group without touching CUDA."""
    import torch.distributed as torch_dist
    if torch_dist.is_available() and torch_dist.is_initialized():
        return
    if launcher != 'pytorch':
        raise ValueError(
            f'launcher {launcher!r} without a GPU is not supported: use '
            "tools/dist_train.sh (torchrun, launcher 'pytorch') on CPU")
    torch_dist.init_process_group(backend='gloo')


# --------------------------------------------------------------------------
# (e) `dmue_mm::` config paths
# --------------------------------------------------------------------------
#: prefix of a config shipped in the package
CONFIG_PREFIX = 'dmue_mm::'


def packaged_configs_dir() -> str:
    """The configs folder of the imported ``dmue_mm`` package."""
    return osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'configs')


def patch_config_package() -> None:
    """Let configs inherit ``'dmue_mm::<path under configs/>'`` (e)."""
    original = Config._get_cfg_path
    if getattr(original, '_dmue_mm', False):
        return

    def _get_cfg_path(cfg_path: str, filename: str):
        if not cfg_path.startswith(CONFIG_PREFIX):
            return original(cfg_path, filename)
        path = osp.join(packaged_configs_dir(), cfg_path[len(CONFIG_PREFIX):])
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{cfg_path!r} (in {filename}) is not a config of the '
                f'installed dmue_mm: no {path}')
        return path, None  # read as a local base: no registry scope

    _get_cfg_path._dmue_mm = True
    Config._get_cfg_path = staticmethod(_get_cfg_path)


def apply_import_time_shims() -> None:
    """Apply the shims that are safe to apply on import (a, b, e)."""
    install_checkpoint_loader()
    patch_adjust_hue()
    patch_config_package()
