"""Helpers of tools/test.py: --out rules, the automatic ExpressionMetric and
the confusion-matrix path."""
import os.path as osp
from types import SimpleNamespace

import pytest
from mmengine.config import Config

from dmue_mm.evaluation import (ExpressionMetric, add_expression_metric,
                                resolve_out_item, set_confusion_png)
from dmue_mm.utils.errors import CLIError


class TestResolveOutItem:

    @pytest.mark.parametrize('out, item, expected', [
        (None, None, None),
        ('m.json', None, 'metrics'),
        ('p.pkl', None, 'pred'),
        ('p.pickle', 'pred', 'pred'),
        ('m.pkl', 'metrics', 'metrics'),
        ('m.yaml', 'metrics', 'metrics'),
    ])
    def test_rules(self, out, item, expected):
        assert resolve_out_item(out, item) == expected

    @pytest.mark.parametrize('out, item, match', [
        (None, 'metrics', '--out-item needs --out'),
        ('m.json', 'pred', '.pkl'),
        ('m.txt', None, '.pkl'),
    ])
    def test_errors(self, out, item, match):
        with pytest.raises(CLIError, match=match):
            resolve_out_item(out, item)


class TestAddExpressionMetric:

    @pytest.mark.parametrize('evaluator', [
        dict(type='Accuracy', topk=(1, )),
        [dict(type='mmpretrain.Accuracy'),
         dict(type='SingleLabelMetric')],
    ])
    def test_plain_evaluators_get_it(self, evaluator):
        shared = Config(
            dict(val_evaluator=evaluator, test_evaluator=evaluator))
        assert add_expression_metric(shared)
        types = [m['type'] for m in shared.test_evaluator]
        assert types[-1] == 'ExpressionMetric' and len(types) >= 2
        # the validation evaluator is untouched
        assert 'ExpressionMetric' not in str(shared.val_evaluator)

    @pytest.mark.parametrize('evaluator', [
        dict(type='ExpressionMetric'),
        [dict(type='Accuracy'),
         dict(type='ExpressionMetric')],
        dict(type='MultiLabelMetric'),
        dict(type='Evaluator', metrics=[dict(type='Accuracy')]),
        None,
    ])
    def test_others_unchanged(self, evaluator):
        cfg = Config(dict(test_evaluator=evaluator))
        before = cfg.pretty_text
        assert not add_expression_metric(cfg)
        assert cfg.pretty_text == before


class TestSetConfusionPng:

    def runner(self, tmp_path, *metrics):
        return SimpleNamespace(
            test_evaluator=SimpleNamespace(metrics=list(metrics)),
            log_dir=str(tmp_path))

    def test_default_in_log_dir(self, tmp_path):
        metric = ExpressionMetric()
        assert set_confusion_png(self.runner(tmp_path, metric), None) == [
            osp.join(str(tmp_path), 'confusion_matrix.png')
        ]
        assert metric.confusion_png.endswith('confusion_matrix.png')

    def test_cli_path_wins_config_path_kept(self, tmp_path):
        metric = ExpressionMetric(confusion_png='cfg.png')
        assert set_confusion_png(self.runner(tmp_path, metric),
                                 None) == ['cfg.png']
        assert set_confusion_png(self.runner(tmp_path, metric),
                                 'cli.png') == ['cli.png']

    def test_two_metrics_get_two_files(self, tmp_path):
        paths = set_confusion_png(
            self.runner(tmp_path, ExpressionMetric(), ExpressionMetric()),
            'cm.png')
        assert paths == ['cm.png', 'cm_1.png']

    def test_cli_path_needs_the_metric(self, tmp_path):
        assert set_confusion_png(self.runner(tmp_path), None) == []
        with pytest.raises(CLIError, match='--cm-png needs'):
            set_confusion_png(self.runner(tmp_path), 'cm.png')
