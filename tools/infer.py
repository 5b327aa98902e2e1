"""Predict facial expressions with a deploy model: class probabilities with
class names, as a table or a JSON/CSV file.

Examples::

    # aligned 256x256 crops (as the original inference.py expects)
    python tools/infer.py deploy/deploy.py deploy/last.pth crops/
    # any photos: detect and align the largest face first
    python tools/infer.py deploy/deploy.py deploy/last.pth photo.jpg --align \\
        --out predictions.csv

The deploy config and checkpoint come from ``BranchPruningHook`` or
``tools/convert.py`` (docs/deploy.md).
"""
import argparse

from dmue_mm.apis import (ExpressionInferencer, predictions_table,
                          write_predictions)
from dmue_mm.utils.cli import (add_trust_checkpoint_arg,
                               apply_trust_checkpoint, cli_entry)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Facial-expression probabilities of images',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', help='deploy config')
    parser.add_argument('checkpoint', help='deploy checkpoint')
    parser.add_argument(
        'inputs', nargs='+', help='image files and/or folders (recursive)')
    parser.add_argument(
        '--align',
        action='store_true',
        help='detect and align the largest face first')
    parser.add_argument(
        '--align-mode',
        choices=('align', 'crop'),
        default='align',
        help='align: DMUE 5-point template; crop: box crop')
    parser.add_argument(
        '--out',
        help='write the results to a .json or .csv '
        'file instead of printing a table')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--classes',
        help='class names, comma-separated '
        "(default: the checkpoint's)")
    add_trust_checkpoint_arg(parser)
    args = parser.parse_args(argv)
    apply_trust_checkpoint(args)
    return args


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    classes = args.classes.split(',') if args.classes else None
    inferencer = ExpressionInferencer(
        args.config,
        args.checkpoint,
        device=args.device,
        align=args.align,
        align_mode=args.align_mode,
        classes=classes)
    predictions = inferencer(
        args.inputs, batch_size=args.batch_size, progress=True)
    if args.out:
        write_predictions(predictions, inferencer.classes, args.out)
        failed = sum(p.error is not None for p in predictions)
        print(f'{len(predictions)} images ({failed} without prediction) '
              f'-> {args.out}')
    else:
        print(predictions_table(predictions, inferencer.classes))


if __name__ == '__main__':
    main()
