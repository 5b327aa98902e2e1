"""Shared plumbing of the command-line tools.

Every tool under ``tools/`` is a thin ``main`` around these helpers, so that
config loading, ``--cfg-options`` checking, work-dir rules and the one-line
error reporting behave the same everywhere.
"""
import argparse
import difflib
import functools
import importlib.util
import os
import os.path as osp
import sys
from copy import deepcopy
from typing import Any, Callable, Dict, Iterable, Optional

from mmengine.config import Config, ConfigDict, DictAction

from .errors import CLIError, DMUEError

__all__ = [
    'CLIError', 'cli_entry', 'shutdown_process_group', 'load_config',
    'check_cfg_options', 'add_common_args', 'parse_with_local_rank',
    'set_work_dir', 'set_dataloader_defaults',
    'disable_idle_persistent_workers', 'merge_cfg_options', 'VIS_BACKENDS',
    'set_vis_backends', 'add_trust_checkpoint_arg', 'apply_trust_checkpoint',
    'DATALOADERS', 'check_before_run'
]

#: ``--vis-backend`` name -> (MMEngine backend type, the package it needs)
VIS_BACKENDS = {'tensorboard': ('TensorboardVisBackend', 'tensorboard')}

#: The dataloader fields of a config.
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def cli_entry(main: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``main`` and turn user errors into ``error: ...`` and exit code 2.

    :class:`~dmue_mm.utils.errors.DMUEError` (bad arguments, config keys or
    data) and :class:`FileNotFoundError` are reported on one line; set
    ``DMUE_DEBUG=1`` to get the traceback instead.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        finished = False
        try:
            result = main(*args, **kwargs)
            finished = True
            return result
        except (DMUEError, FileNotFoundError) as exc:
            if os.environ.get('DMUE_DEBUG'):
                raise
            message = ' '.join(str(exc).split())
            print(f'error: {message}', file=sys.stderr)
            sys.exit(2)
        finally:
            # a failed rank must not wait in a barrier for the others
            shutdown_process_group(wait=finished)

    return wrapper


def shutdown_process_group(wait: bool = True) -> None:
    """Wait for every rank, then destroy the process groups, before the
    interpreter exits.

    A gloo worker thread that still holds the last finished collective
    (MMEngine's result broadcast at the end of a run) frees its tensors
    under the GIL; if the interpreter is already finalising, Python ends
    that thread inside C++ code and the finished run aborts with
    ``terminate called without an active exception`` (SIGABRT), which
    ``torchrun`` reports as a failure. The barrier releases the GIL while
    the workers drain.

    Args:
        wait (bool): Pass the barrier first (every rank finished); False
            after an error, where another rank may never arrive.
    """
    import torch.distributed as torch_dist
    if torch_dist.is_available() and torch_dist.is_initialized():
        try:
            if wait:
                torch_dist.barrier()
        finally:
            torch_dist.destroy_process_group()


def _closest(name: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return f' (did you mean {matches[0]!r}?)' if matches else ''


def check_cfg_options(cfg: Config, options: Optional[Dict[str, Any]]) -> Dict:
    """Check that every ``--cfg-options`` key names an existing config entry.

    MMEngine silently adds unknown keys, so a typo such as
    ``model.head.gama=10`` would be ignored. Here each dotted key must exist in
    the config (list items by index). A key written with a leading ``+``
    (``+model.backbone.init_cfg.type=Pretrained``) may create a new entry; its
    parent must exist.

    Args:
        cfg (Config): The loaded config.
        options (dict, optional): Parsed ``--cfg-options``.

    Returns:
        dict: The options with the ``+`` markers removed, ready for
        ``cfg.merge_from_dict``.

    Raises:
        CLIError: Naming the first unknown key and the closest existing one.
    """
    checked = {}
    for key, value in (options or {}).items():
        allow_new = key.startswith('+')
        key = key.lstrip('+')
        parts = key.split('.')
        node: Any = cfg
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise CLIError(
                        f'unknown --cfg-options key {key!r}: '
                        f'{".".join(parts[:depth]) or "config"} is a list of '
                        f'{len(node)} items, not indexable by {part!r}')
                node = node[int(part)]
            elif isinstance(node, (dict, Config)):
                if part not in node:
                    if last and allow_new:
                        break
                    raise CLIError(
                        f'unknown --cfg-options key {key!r}: no '
                        f'{part!r} under '
                        f'{".".join(parts[:depth]) or "the config top level"}'
                        f'{_closest(part, node.keys())}; prefix the key with '
                        "'+' to add a new entry")
                node = node[part]
            else:
                raise CLIError(
                    f'unknown --cfg-options key {key!r}: '
                    f'{".".join(parts[:depth])} is a {type(node).__name__}, '
                    'not a dict')
        _check_not_code(key, value)
        checked[key] = value
    return checked


def _check_not_code(key: str, value: Any) -> None:
    """Refuse a ``dict(...)`` string: ``DictAction`` parses lists and
    tuples but never evaluates ``dict(...)``, which then reaches the builders
    as a string (``visualizer.vis_backends="[dict(type=...)]"`` ends in a
    TypeError traceback)."""
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_not_code(key, item)
    elif isinstance(value, str) and value.replace(' ', '').startswith('dict('):
        raise CLIError(
            f'--cfg-options {key}: {value!r} stays a string (dict(...) is not '
            'evaluated); set each field as its own key, e.g. '
            f'{key}.0.type=NAME for a list item or {key}.type=NAME for a dict '
            '(TensorBoard: --vis-backend tensorboard)')


def load_config(path: str) -> Config:
    """Load a config file with a clear error when it does not exist."""
    if not osp.isfile(path):
        raise CLIError(f'config file {path!r} not found: check the path '
                       '(configs live under configs/)')
    return Config.fromfile(path)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments that every runner tool shares with MMPretrain."""
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--vis-backend',
        action='append',
        choices=sorted(VIS_BACKENDS),
        default=[],
        help='also log to this backend (repeatable), next to the local JSON '
        'log: tensorboard writes event files to <work_dir>/<timestamp>/'
        'vis_data/ (needs the tensorboard package, requirements/'
        'optional.txt)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value; keys must exist in '
        'the config (prefix with "+" to add a new key). Lists as key="[a,b]".')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_trust_checkpoint_arg(parser)


def add_trust_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--trust-checkpoint`` (see :func:`apply_trust_checkpoint`)."""
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='unpickle checkpoints fully (they may run code): only for '
        'trusted files that the safe loader refuses, e.g. from an older stack')


def apply_trust_checkpoint(args: argparse.Namespace) -> None:
    """Export ``DMUE_TRUST_CHECKPOINT=1`` for ``--trust-checkpoint``, so
    that :func:`dmue_mm.compat.load_local_checkpoint` (in this process and
    in the ranks it starts) unpickles fully."""
    from dmue_mm.compat import TRUST_CHECKPOINT_ENV
    if getattr(args, 'trust_checkpoint', False):
        os.environ[TRUST_CHECKPOINT_ENV] = '1'


def parse_with_local_rank(parser: argparse.ArgumentParser,
                          argv=None) -> argparse.Namespace:
    """Parse args, export ``LOCAL_RANK`` as MMPretrain's tools do and
    apply ``--trust-checkpoint``."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    apply_trust_checkpoint(args)
    return args


def set_work_dir(cfg: Config, config_path: str,
                 work_dir: Optional[str]) -> None:
    """Work dir priority: CLI > config > ``work_dirs/<config name>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])


def set_dataloader_defaults(cfg: Config,
                            fields: Iterable[str],
                            defaults: Dict[str, Any],
                            overrides: Optional[Dict[str, Any]] = None
                            ) -> None:
    """Fill dataloader settings under ``fields`` as MMPretrain's tools do.

    Args:
        cfg (Config): The config, modified in place.
        fields (Iterable[str]): Dataloader fields such as ``train_dataloader``.
        defaults (dict): Used where the config sets nothing.
        overrides (dict, optional): Win over the config (``--no-pin-memory``).
    """
    for field in fields:
        if cfg.get(field, None) is None:
            continue
        merged = ConfigDict(collate_fn=dict(type='default_collate'))
        merged.update(deepcopy(defaults))
        merged.update(cfg[field])
        merged.update(overrides or {})
        cfg[field] = merged
    disable_idle_persistent_workers(cfg, fields)


def disable_idle_persistent_workers(cfg: Config,
                                    fields: Iterable[str]) -> None:
    """Set ``persistent_workers=False`` where a dataloader has no workers.

    PyTorch refuses persistent workers with ``num_workers=0``; call this again
    after ``--cfg-options`` may have changed ``num_workers``.
    """
    for field in fields:
        loader = cfg.get(field, None)
        if loader is not None and not loader.get('num_workers', 0):
            loader['persistent_workers'] = False


def merge_cfg_options(cfg: Config, options: Optional[Dict]) -> None:
    """Check and merge ``--cfg-options`` into ``cfg``, then turn off
    persistent workers where the options left a dataloader without workers
    (``test_dataloader.num_workers=0``)."""
    if options:
        cfg.merge_from_dict(check_cfg_options(cfg, options))
        disable_idle_persistent_workers(cfg, DATALOADERS)


def check_before_run(cfg: Config, fields: Iterable[str] = DATALOADERS) -> None:
    """The checks of a run before any work, shared by the runner tools.

    * ``model.head.num_classes`` against the classes of the datasets under
      ``fields`` (config, dataset type, or the data's metadata; see
      :func:`dmue_mm.datasets.check_head_classes`);
    * adds :class:`~dmue_mm.hooks.CheckpointCheckHook`, which refuses a
      ``load_from`` / resume checkpoint of another shape.

    Args:
        cfg (Config): The final config (after ``--cfg-options``).
        fields (Iterable[str]): The dataloaders the run uses.

    Raises:
        DataError: A class count that disagrees, in one line.
    """
    from dmue_mm.datasets import check_head_classes
    check_head_classes(cfg, fields)
    hooks = cfg.get('custom_hooks') or []
    if not any(
            str(h.get('type', '')).endswith('CheckpointCheckHook')
            for h in hooks):
        hooks.append(dict(type='CheckpointCheckHook'))
    cfg.custom_hooks = hooks


def set_vis_backends(cfg: Config, names: Iterable[str] = ()) -> None:
    """Add the ``--vis-backend`` backends to ``cfg.visualizer`` and check that
    every configured backend's package is installed.

    The check also covers backends set through ``--cfg-options`` (e.g.
    ``visualizer.vis_backends.0.type=TensorboardVisBackend``), which MMEngine
    would otherwise report with a traceback once the run has started.

    Args:
        cfg (Config): The config, modified in place.
        names (Iterable[str]): Keys of :data:`VIS_BACKENDS`.

    Raises:
        CLIError: A backend's package is missing.
    """
    names = list(names)
    if names and cfg.get('visualizer', None) is None:
        cfg.visualizer = ConfigDict(
            type='mmengine.Visualizer',
            vis_backends=[dict(type='mmengine.LocalVisBackend')])
    visualizer = cfg.get('visualizer', None) or {}
    backends = visualizer.get('vis_backends', None) or []
    for name in names:
        backend_type = VIS_BACKENDS[name][0]
        if all(b.get('type', '').split('.')[-1] != backend_type
               for b in backends):
            backends.append(ConfigDict(type=backend_type))
    if names:
        cfg.visualizer.vis_backends = backends
    needs = {t: package for t, package in VIS_BACKENDS.values()}
    for backend in backends:
        package = needs.get(str(backend.get('type', '')).split('.')[-1])
        if package and importlib.util.find_spec(package) is None:
            raise CLIError(
                f'visualizer backend {backend["type"]} needs the {package!r} '
                f'package: pip install {package} (or pip install -r '
                'requirements/optional.txt)')
