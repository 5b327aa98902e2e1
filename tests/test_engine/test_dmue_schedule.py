"""DMUE optimiser groups and the per-epoch lr table of the original."""
import os.path as osp

import pytest
import torch
from conftest import ROOT
from dmue_testing import one_thread, tiny_dmue  # noqa: F401
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import PARAM_SCHEDULERS

import dmue_mm  # noqa: F401

SCHEDULE = osp.join(ROOT, 'configs', '_base_', 'schedules',
                    'dmue_adam_36e.py')


def expanded(bounds):
    """The original's get_lr: value of the first entry whose bound > e."""
    return [next(v for b, v in bounds if b > e) for e in range(36)]


# the original config.py's tables
LR1 = expanded([(6, 1e-4), (12, 5e-5), (20, 1e-5), (22, 1e-5), (25, 5e-5),
                (60, 1e-5)])
LR2 = expanded([(4, 1e-3), (8, 5e-4), (14, 1e-4), (22, 1e-5), (25, 5e-5),
                (60, 1e-5)])


def build(model, cfg=None):
    init_default_scope('mmpretrain')  # as the Runner does
    cfg = cfg or Config.fromfile(SCHEDULE)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    scheduler = PARAM_SCHEDULERS.build(
        dict(cfg.param_scheduler, optimizer=wrapper))
    return wrapper, scheduler


class TestOptimizerGroups:

    def test_two_named_groups(self):
        model = tiny_dmue(4)
        wrapper, _ = build(model)
        groups = {g['name']: g for g in wrapper.optimizer.param_groups}
        assert set(groups) == {'trunk', 'classifier'}
        ids = {n: {id(p) for p in g['params']} for n, g in groups.items()}
        names = {id(p): n for n, p in model.named_parameters()}
        trunk = {names[i] for i in ids['trunk']}
        classifier = {names[i] for i in ids['classifier']}
        assert all(n.startswith(('backbone.', 'head.branches.'))
                   for n in trunk)
        assert all(
            n.startswith(('head.fc', 'head.aux_fcs', 'head.uncertainty_mlp',
                          'head.bnneck')) for n in classifier)
        assert len(trunk) + len(classifier) == len(list(model.parameters()))
        assert isinstance(wrapper.optimizer, torch.optim.Adam)
        assert all(g['weight_decay'] == 1e-4 for g in groups.values())

    def test_released_code_leaves_mlp_and_neck_out(self):
        model = tiny_dmue(4, released_code=True)
        wrapper, _ = build(model)
        optimised = {id(p) for g in wrapper.optimizer.param_groups
                     for p in g['params']}
        head = model.head
        for module in (head.uncertainty_mlp, head.bnneck):
            assert not any(id(p) in optimised for p in module.parameters())
        assert all(id(p) in optimised for p in head.fc.parameters())

    def test_unknown_paramwise_key(self):
        cfg = Config.fromfile(SCHEDULE)
        cfg.optim_wrapper.paramwise_cfg.lr_mult = 2
        with pytest.raises(ValueError, match='classifier_lr_mult'):
            build(tiny_dmue(4), cfg)


class TestGroupStepLR:

    def test_lr_per_epoch_matches_spec_table(self):
        wrapper, scheduler = build(tiny_dmue(4))
        seen = {'trunk': [], 'classifier': []}
        for _ in range(36):
            for group in wrapper.optimizer.param_groups:
                seen[group['name']].append(group['lr'])
            wrapper.step()
            scheduler.step()
        # each lr is base lr x a table factor in float64 (a rounding or two,
        # ~1e-16); rel 1e-9 is far above that and far below the table's
        # factor-2 steps
        assert seen['trunk'] == pytest.approx(LR1, rel=1e-9)
        assert seen['classifier'] == pytest.approx(LR2, rel=1e-9)
        # the deliberate bump at epochs 22-24
        assert seen['trunk'][21:26] == pytest.approx(
            [1e-5, 5e-5, 5e-5, 5e-5, 1e-5], rel=1e-9)

    def test_missing_group_table(self):
        cfg = Config.fromfile(SCHEDULE)
        cfg.param_scheduler.steps.pop('classifier')
        with pytest.raises(ValueError, match='classifier'):
            build(tiny_dmue(4), cfg)

    def test_table_must_start_at_zero(self):
        cfg = Config.fromfile(SCHEDULE)
        cfg.param_scheduler.steps.trunk = [(1, 1.0)]
        with pytest.raises(ValueError, match='increasing starts'):
            build(tiny_dmue(4), cfg)
