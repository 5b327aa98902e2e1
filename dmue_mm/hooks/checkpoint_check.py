"""Refuse a checkpoint of another shape before MMEngine loads it.

MMEngine loads ``load_from`` and ``--resume`` checkpoints non-strictly: a
tensor of another shape, a missing or an unexpected key only gives a
"do not match exactly" warning, and the run goes on with part of the model
at its initialisation (a 7-class checkpoint tested with an 8-class config
reports chance accuracy with exit status 0).
"""
from typing import Any, Mapping, Optional

from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import find_latest_checkpoint

from mmpretrain.registry import HOOKS

from dmue_mm.converters.checkpoint_io import check_state_dict, strip_prefix

__all__ = ['PARTIAL_FORMATS', 'CheckpointCheckHook', 'check_checkpoint_fits']

#: ``meta.dmue_mm.format`` of the plugin's files that hold part of a model
#: by design (``docs/deploy.md``): ``plugin-init`` (``convert.py
#: msceleb``: the backbone and branch copies, the rest keeps its
#: initialisation) and ``plugin-target`` (``convert.py target``: the deploy
#: model's parts). Missing keys are allowed for them; shapes and unexpected
#: keys are still checked.
PARTIAL_FORMATS = ('plugin-init', 'plugin-target')


def _is_bn_counter(key: str) -> bool:
    # MMEngine ignores missing BN counters too; they carry no weights
    return key.endswith('num_batches_tracked')


def check_checkpoint_fits(model: Any, checkpoint: Mapping,
                          source: str) -> None:
    """Check a loaded checkpoint against the model it is loaded into.

    Args:
        model (nn.Module): The model (a DDP or TTA wrapper is unwrapped).
        checkpoint (Mapping): ``{'state_dict': ..., 'meta': ...}`` or a bare
            state dict; a ``module.`` prefix is stripped, as MMEngine does.
        source (str): The file, for the message.

    Raises:
        ArchitectureMismatchError: Naming the first mismatching key and
            both shapes, or the first missing or unexpected key.
    """
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    state = checkpoint.get('state_dict', checkpoint)
    meta = checkpoint.get('meta') or {}
    fmt = (meta.get('dmue_mm') or {}).get('format')
    partial = fmt in PARTIAL_FORMATS
    check_state_dict(
        model.state_dict(),
        strip_prefix(state),
        f'checkpoint {source!r} does not fit the model of the config '
        '(check model.head.num_classes and the backbone)',
        may_miss=(lambda key: True) if partial else _is_bn_counter)


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Check every checkpoint the Runner loads (``load_from``, resume) with
    :func:`check_checkpoint_fits`, so that a mismatch stops the run with
    one line instead of a warning. ``tools/train.py`` and ``tools/test.py``
    add it.
    """
    priority = 'LOWEST'  # after hooks that adapt the checkpoint (EMA)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Check ``checkpoint`` against ``runner.model``."""
        source: Optional[str] = runner.cfg.get('load_from')
        if source is None:
            source = find_latest_checkpoint(runner.work_dir) or 'checkpoint'
        check_checkpoint_fits(runner.model, checkpoint, source)
