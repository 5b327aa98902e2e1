"""Test (and evaluate) a checkpoint with MMEngine's Runner.

Same flags and behaviour as MMPretrain's ``tools/test.py``; ``--amp`` tests
in fp16 on GPU and bf16 on CPU. On an expression dataset it reports top-1,
mean class accuracy, per-class precision/recall/F1, the confusion matrix
(printed with class names and saved as a PNG) and the probability metrics of
``ExpressionMetric`` (see ``docs/evaluation.md``):

- a test evaluator made only of ``Accuracy``/``SingleLabelMetric``/
  ``ConfusionMatrix`` gets an ``ExpressionMetric`` appended
  (``--plain-evaluator`` keeps the config's evaluator as is);
- ``--cm-png PATH`` chooses the PNG, else ``<work_dir>/<timestamp>/
  confusion_matrix.png``;
- ``--out x.json`` writes the metrics as JSON, ``--out x.pkl`` the pickled
  predictions (MMPretrain's behaviour); ``--out-item`` overrides the suffix;
- ``--vis-backend tensorboard`` also writes the scalar metrics as TensorBoard
  events under ``<work_dir>/<timestamp>/vis_data/``.

Example::

    python tools/test.py configs/dmue/res18_rafdb.py \
        work_dirs/res18_rafdb/epoch_36.pth --tta --out metrics.json
"""
import argparse
import os.path as osp
from copy import deepcopy

from mmengine.config import ConfigDict
from mmengine.evaluator import DumpResults
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import dmue_mm  # noqa: F401  registers the plugin and applies the shims
from dmue_mm.compat import adapt_cfg_to_machine
from dmue_mm.evaluation import (add_expression_metric, dump_metrics,
                                resolve_out_item, set_confusion_png)
from dmue_mm.hooks import TestMetricsVisHook
from dmue_mm.utils.cli import (CLIError, add_common_args, check_before_run,
                               cli_entry, load_config, merge_cfg_options,
                               parse_with_local_rank, set_dataloader_defaults,
                               set_vis_backends, set_work_dir)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='the file to write results to: metrics for .json, pickled '
        'predictions for .pkl (see --out-item)')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='write metrics (json/yaml/pkl by suffix) or predictions (.pkl) '
        'to --out; default: metrics for a .json file, else predictions')
    parser.add_argument(
        '--cm-png',
        help='save the confusion matrix PNG here (default: '
        '<work_dir>/<timestamp>/confusion_matrix.png)')
    parser.add_argument(
        '--plain-evaluator',
        action='store_true',
        help='use the config\'s test_evaluator as is; by default a plain '
        'Accuracy/SingleLabelMetric evaluator gets an ExpressionMetric')
    parser.add_argument(
        '--amp', action='store_true', help='mixed-precision test')
    parser.add_argument(
        '--show-dir', help='directory to save visualised predictions to')
    parser.add_argument(
        '--show', action='store_true', help='show predictions in a window')
    parser.add_argument(
        '--interval', type=int, default=1, help='visualise every N samples')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='window display time (s)')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='disable pin_memory in dataloaders')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation: the config\'s tta_pipeline/tta_model, '
        'or else the average score of the image and its horizontal flip')
    add_common_args(parser)
    return parse_with_local_rank(parser, argv)


def flip_tta(cfg) -> None:
    """Wrap the model in flip test-time augmentation (unless configured)."""
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        test_pipeline = cfg.test_dataloader.dataset.pipeline
        cfg.tta_pipeline = deepcopy(test_pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [dict(type='RandomFlip', prob=1.),
                 dict(type='RandomFlip', prob=0.)],
                [test_pipeline[-1]],
            ])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def merge_args(cfg, args):
    """Merge command-line arguments into the config."""
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.config, args.work_dir)
    if not osp.isfile(args.checkpoint):
        raise CLIError(f'checkpoint {args.checkpoint!r} not found: check the '
                       'path')
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg.fp16 = True

    if args.show or args.show_dir is not None:
        if 'visualization' not in cfg.default_hooks:
            raise CLIError('--show/--show-dir need default_hooks.'
                           "visualization=dict(type='VisualizationHook') in "
                           'the config')
        vis = cfg.default_hooks.visualization
        if vis.type in ('VisualizationHook', 'mmpretrain.VisualizationHook'):
            vis.type = 'ExpressionVisualizationHook'  # a file per image
        vis.enable = True
        vis.show = args.show
        vis.wait_time = args.wait_time
        vis.out_dir = args.show_dir
        vis.interval = args.interval

    if args.tta:
        flip_tta(cfg)
    if not args.plain_evaluator:
        add_expression_metric(cfg)

    set_dataloader_defaults(
        cfg, ('test_dataloader', ),
        defaults=dict(pin_memory=True),
        overrides=dict(pin_memory=False) if args.no_pin_memory else None)
    merge_cfg_options(cfg, args.cfg_options)
    set_vis_backends(cfg, args.vis_backend)
    check_before_run(cfg, ('test_dataloader', ))
    adapt_cfg_to_machine(cfg)
    return cfg


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    out_item = resolve_out_item(args.out, args.out_item)
    cfg = merge_args(load_config(args.config), args)
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    set_confusion_png(runner, args.cm_png)
    runner.register_hook(TestMetricsVisHook())
    if out_item == 'pred':
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if out_item == 'metrics':
        dump_metrics(metrics, args.out)
        print_log(f'metrics written to {args.out}', logger='current')
    return metrics


if __name__ == '__main__':
    main()
