"""Optimiser constructor of the DMUE recipes: two parameter groups."""
from typing import Optional

import torch.nn as nn
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmpretrain.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                                 OPTIMIZERS)

__all__ = ['DMUEOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DMUEOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Two parameter groups, as the original's Adam.

    * ``trunk``: the backbone and the auxiliary branches, at the optimiser's
      ``lr`` (``lr1``);
    * ``classifier``: the head's classifiers (``fc``, ``aux_fcs``) and, in
      the paper's mode, the uncertainty MLP and the BN-neck affine, at
      ``lr * classifier_lr_mult`` (``lr2``).

    Frozen parameters (``requires_grad=False``, e.g. the MLP and BN-neck with
    ``released_code=True``) are left out of the optimiser, as in the released
    code. Each group carries its ``name`` so that :class:`GroupStepLR` can
    schedule them separately. Weight decay is the optimiser's (coupled L2
    for ``Adam``) on every parameter.

    Args:
        optim_wrapper_cfg (dict): ``optim_wrapper`` config; its ``optimizer``
            gives the type, ``lr`` and the other defaults.
        paramwise_cfg (dict, optional): Only ``classifier_lr_mult``
            (default 10, i.e. 1e-3 for lr 1e-4).
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        options = dict(paramwise_cfg or {})
        self.classifier_lr_mult = float(
            options.pop('classifier_lr_mult', 10.0))
        if options:
            raise ValueError(
                'DMUEOptimWrapperConstructor accepts only '
                f"optim_wrapper.paramwise_cfg.classifier_lr_mult, got "
                f'{sorted(options)}')
        super().__init__(optim_wrapper_cfg, None)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if is_model_wrapper(model):
            model = model.module
        head = getattr(model, 'head', None)
        if not hasattr(head, 'classifier_parameters'):
            raise ValueError(
                'DMUEOptimWrapperConstructor needs a DMUEClassifier (a head '
                'with classifier_parameters()); use the default constructor '
                f'for {type(model).__name__}')
        classifier_ids = {id(p) for p in head.classifier_parameters()}
        groups = dict(trunk=[], classifier=[])
        for param in model.parameters():
            if param.requires_grad:
                name = ('classifier'
                        if id(param) in classifier_ids else 'trunk')
                groups[name].append(param)
        lr = self.base_lr
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = [
            dict(name='trunk', params=groups['trunk'], lr=lr),
            dict(name='classifier', params=groups['classifier'],
                 lr=lr * self.classifier_lr_mult)
        ]
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(
            wrapper_cfg, default_args=dict(optimizer=optimizer))
