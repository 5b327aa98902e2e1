"""Convert DMUE checkpoints: original formats, deploy models, ONNX.

Subcommands (``python tools/convert.py SUBCOMMAND -h`` for all options):

``snapshot``
    An original DMUE training snapshot (bare state dict, keys with or
    without ``module.``; ResNet-18 face stem or ResNet-50-IBN-a; any K) -> a
    plugin checkpoint (``-o``, for ``load_from``: resume or fine-tune)
    and/or a deploy config + checkpoint (``--deploy-dir``)::

        python tools/convert.py snapshot ep7_b3400_acc0.6285.pth \\
            -o work_dirs/affectnet_r18.pth --deploy-dir deploy/

``target``
    The original converted target-only weights (``base.*``,
    ``bottleneck.*``, ``classifiers.0.weight``) -> a deploy config +
    checkpoint::

        python tools/convert.py target AffectNet_res18.pth \\
            --deploy-dir deploy/

``msceleb``
    The original MS-Celeb-1M pretraining checkpoint (``feat_net.*``) ->
    plugin initial weights (the trunk, and with ``--num-classes`` every
    branch copy)::

        python tools/convert.py msceleb mv_epoch_17.pt \\
            -o pretrain/faceres18_msceleb.pth --num-classes 8

``deploy``
    A checkpoint of a DMUE training run -> a deploy config + checkpoint
    (what ``BranchPruningHook`` writes)::

        python tools/convert.py deploy work_dirs/rafdb/epoch_36.pth \\
            --deploy-dir work_dirs/rafdb/deploy

``onnx``
    A deploy config + checkpoint -> ONNX (dynamic batch), checked against
    onnxruntime::

        python tools/convert.py onnx deploy/deploy.py deploy/last.pth \\
            -o model.onnx

Original files are read with ``torch.load(weights_only=True)``.
"""
import argparse

from dmue_mm.converters import (ARCH_CHOICES, TEST_DATA_MODES, OnnxReport,
                                convert_msceleb, convert_plugin,
                                convert_snapshot, convert_target, export_onnx)
from dmue_mm.utils.cli import cli_entry


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, the module docstring as written."""


def _classes(text):
    return [c.strip() for c in text.split(',') if c.strip()]


def _add_deploy_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        '--deploy-dir',
        required=required,
        help='write the deploy config and checkpoint here')
    parser.add_argument(
        '--classes',
        type=_classes,
        help='class names in label order, comma-separated (default: the '
        "checkpoint's; AffectNet-8's order for an original K=8 model)")
    parser.add_argument(
        '--test-data',
        choices=TEST_DATA_MODES,
        default='folder',
        help='test dataset of the deploy config: folder = stock image-folder '
        'CustomDataset; plugin = keep the training config\'s (e.g. LMDB)')
    parser.add_argument(
        '--test-root', help='data_root of the deploy config\'s test dataset')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)

    snap = sub.add_parser(
        'snapshot', help='original training snapshot -> plugin/deploy')
    snap.add_argument('checkpoint', help='the original snapshot (.pth)')
    snap.add_argument('-o', '--out', help='plugin checkpoint to write')
    snap.add_argument('--arch', choices=ARCH_CHOICES, default='auto')
    _add_deploy_args(snap, required=False)

    target = sub.add_parser(
        'target', help='original target-only weights -> deploy')
    target.add_argument('checkpoint', help='the converted weights (.pth)')
    target.add_argument('--arch', choices=ARCH_CHOICES, default='auto')
    _add_deploy_args(target, required=True)

    msceleb = sub.add_parser(
        'msceleb', help='original MS-Celeb-1M pretraining -> plugin init')
    msceleb.add_argument('checkpoint', help='mv_epoch_*.pt')
    msceleb.add_argument(
        '-o', '--out', required=True, help='plugin checkpoint to write')
    msceleb.add_argument(
        '--num-classes',
        type=int,
        help='K of the DMUE model: also fill every auxiliary branch')
    msceleb.add_argument('--arch', choices=ARCH_CHOICES, default='auto')

    deploy = sub.add_parser('deploy', help='plugin checkpoint -> deploy')
    deploy.add_argument('checkpoint', help='checkpoint of a DMUE run')
    deploy.add_argument(
        '--config',
        help='the training config (default: stored in the '
        'checkpoint)')
    deploy.add_argument('--name', help='deploy checkpoint name (no .pth)')
    _add_deploy_args(deploy, required=True)

    onnx = sub.add_parser('onnx', help='deploy model -> ONNX')
    onnx.add_argument('config', help='deploy config')
    onnx.add_argument('checkpoint', help='deploy checkpoint')
    onnx.add_argument('-o', '--out', required=True, help='the .onnx file')
    onnx.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='input size (default: the test pipeline\'s crop size)')
    onnx.add_argument('--opset', type=int, default=17)
    onnx.add_argument(
        '--no-verify', action='store_true', help='skip the onnxruntime check')
    onnx.add_argument(
        '--atol',
        type=float,
        help='largest allowed logit difference (default: the float32 '
        'rounding of the model\'s sums, from its layer count and fan-in)')
    return parser.parse_args(argv)


def run(args: argparse.Namespace):
    """Dispatch a parsed command line."""
    deploy_args = dict(
        classes=getattr(args, 'classes', None),
        test_data=getattr(args, 'test_data', 'folder'),
        test_root=getattr(args, 'test_root', None))
    if args.command == 'snapshot':
        return convert_snapshot(args.checkpoint, args.out, args.deploy_dir,
                                args.arch, **deploy_args)
    if args.command == 'target':
        return convert_target(args.checkpoint, args.deploy_dir, args.arch,
                              **deploy_args)
    if args.command == 'msceleb':
        return convert_msceleb(args.checkpoint, args.out, args.num_classes,
                               args.arch)
    if args.command == 'deploy':
        return convert_plugin(
            args.checkpoint,
            args.deploy_dir,
            args.config,
            name=args.name,
            **deploy_args)
    return export_onnx(
        args.config,
        args.checkpoint,
        args.out,
        args.shape,
        args.opset,
        not args.no_verify,
        atol=args.atol)


def report(result) -> None:
    """Print what was written."""
    if isinstance(result, OnnxReport):
        diff = ('not verified' if result.max_abs_diff is None else
                f'onnxruntime vs PyTorch max |logit diff| '
                f'{result.max_abs_diff:.2e} (batch {result.verify_batch})')
        print(f'onnx: {result.path} (input N x 3 x {result.input_size[0]} x '
              f'{result.input_size[1]}, dynamic batch); {diff}')
        return
    print(result.summary)
    if result.plugin_checkpoint:
        print(f'plugin checkpoint: {result.plugin_checkpoint}')
    if result.deploy:
        print(f'deploy config:     {result.deploy.config}')
        print(f'deploy checkpoint: {result.deploy.checkpoint}')
    for note in result.notes:
        print(f'note: {note}')


@cli_entry
def main(argv=None):
    report(run(parse_args(argv)))


if __name__ == '__main__':
    main()
