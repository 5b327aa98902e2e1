"""Train a model with MMEngine's Runner (MMPretrain's ``tools/train.py``).

Same flags and behaviour as MMPretrain's tool, plus what this machine needs:
``--amp`` trains with fp16 on GPU and bf16 on CPU, and a distributed launch
without a GPU uses gloo (see ``dmue_mm/compat.py``).

``--vis-backend tensorboard`` logs every scalar (each loss term, learning
rates, validation metrics) to TensorBoard as well as to the JSON log.

Example::

    python tools/train.py configs/dmue/res18_rafdb.py --amp
    python tools/train.py configs/dmue/res18_rafdb.py --vis-backend tensorboard
    tools/dist_train.sh configs/dmue/res18_rafdb.py 4 --resume
"""
import argparse

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import dmue_mm  # noqa: F401  registers the plugin and applies the shims
from dmue_mm.compat import adapt_cfg_to_machine
from dmue_mm.engine import apply_total_batch_size, launched_world_size
from dmue_mm.utils.cli import (CLIError, add_common_args, check_before_run,
                               cli_entry, load_config, merge_cfg_options,
                               parse_with_local_rank, set_dataloader_defaults,
                               set_vis_backends, set_work_dir)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or without a value from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision: fp16 with loss scaling on GPU, bf16 on CPU')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by actual / base batch size')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='disable pin_memory in dataloaders')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='disable persistent_workers in dataloaders')
    add_common_args(parser)
    return parse_with_local_rank(parser, argv)


def merge_args(cfg, args):
    """Merge command-line arguments into the config."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.config, args.work_dir)

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr') is None:
            raise CLIError('--auto-scale-lr needs auto_scale_lr='
                           'dict(base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True

    overrides = {}
    if args.no_pin_memory:
        overrides['pin_memory'] = False
    if args.no_persistent_workers:
        overrides['persistent_workers'] = False
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    set_dataloader_defaults(
        cfg,
        loaders,
        defaults=dict(pin_memory=True, persistent_workers=True),
        overrides=overrides)

    merge_cfg_options(cfg, args.cfg_options)
    set_vis_backends(cfg, args.vis_backend)
    apply_total_batch_size(cfg, launched_world_size(args.launcher),
                           args.cfg_options)
    check_before_run(cfg)
    adapt_cfg_to_machine(cfg, amp=args.amp)
    return cfg


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config), args)
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    runner.train()


if __name__ == '__main__':
    main()
