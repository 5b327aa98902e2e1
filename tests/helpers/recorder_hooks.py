"""Test-only hooks that record what a training run did, per rank, into the
work dir: the train/eval mode of every BatchNorm and dropout layer and the
labels at each used iteration (``ModeRecorderHook``), and the losses and
gradients of the first optimiser step (``FirstStepDumpHook``)."""
import json
import os.path as osp

import torch
import torch.nn as nn
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class ModeRecorderHook(Hook):
    """Writes ``modes_rank<r>.json``: one record per used iteration with
    the epoch, the batch index, the labels and the ``training`` flag of
    every BatchNorm and dropout module during that step."""

    priority = 'LOWEST'  # after EvalModeSwitchHook in before_train_iter

    def __init__(self):
        self.records = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = _unwrap(runner.model)
        norms = [m.training for m in model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        drops = [m.training for m in model.modules()
                 if isinstance(m, nn.Dropout)]
        labels = [int(s.gt_label) for s in data_batch['data_samples']]
        self.records.append(
            dict(epoch=runner.epoch, batch_idx=batch_idx, bn=norms,
                 dropout=drops, labels=labels))

    def after_train(self, runner):
        path = osp.join(runner.work_dir, f'modes_rank{get_rank()}.json')
        with open(path, 'w') as f:
            json.dump(self.records, f)


@HOOKS.register_module()
class FirstStepDumpHook(Hook):
    """Writes ``first_step_rank<r>.pth``: the loss dict of the first
    iteration and every parameter's gradient at its optimiser step."""

    def __init__(self):
        self.grads = None
        self.losses = None

    def before_train(self, runner):
        model = _unwrap(runner.model)

        def grab(optimizer, args, kwargs):
            if self.grads is None:
                self.grads = {
                    n: p.grad.detach().clone()
                    for n, p in model.named_parameters()
                    if p.grad is not None
                }

        runner.optim_wrapper.optimizer.register_step_pre_hook(grab)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.losses is None:
            self.losses = {k: float(v) for k, v in outputs.items()}
            torch.save(
                dict(grads=self.grads, losses=self.losses),
                osp.join(runner.work_dir,
                         f'first_step_rank{get_rank()}.pth'))
