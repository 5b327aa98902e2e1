"""Predict facial expressions with a deploy model: class probabilities with
class names, as a table or a JSON/CSV file.

Examples::

    # aligned 256x256 crops (as the original inference.py expects)
    python tools/infer.py deploy/deploy.py deploy/last.pth crops/
    # any photos: detect and align the largest face first
    python tools/infer.py deploy/deploy.py deploy/last.pth photo.jpg --align \\
        --out predictions.csv
    # a video: 5 frames per second, per-frame CSV + timeline plot
    python tools/infer.py deploy/deploy.py deploy/last.pth clip.mp4 --align \\
        --fps 5 --out clip.csv        # also writes clip_timeline.png

The deploy config and checkpoint come from ``BranchPruningHook`` or
``tools/convert.py`` (docs/deploy.md).
"""
import argparse
import os.path as osp

from dmue_mm.apis import (VIDEO_EXTENSIONS, ExpressionInferencer, is_video,
                          predictions_table, save_video_timeline, video_info,
                          write_predictions)
from dmue_mm.utils.cli import (CLIError, add_trust_checkpoint_arg,
                               apply_trust_checkpoint, cli_entry)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Facial-expression probabilities of images or a video',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', help='deploy config')
    parser.add_argument('checkpoint', help='deploy checkpoint')
    parser.add_argument(
        'inputs',
        nargs='+',
        help='image files and/or folders (recursive), or one video '
        f'({" ".join(VIDEO_EXTENSIONS)})')
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
    parser.add_argument(
        '--fps',
        type=float,
        help='video: frames per second to sample (default: every frame)')
    parser.add_argument(
        '--plot',
        help='video: timeline PNG of the class probabilities (default '
        'with --out: <out>_timeline.png)')
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
    video = any(is_video(item) for item in args.inputs)
    if video:
        if len(args.inputs) > 1:
            raise CLIError('give a video as the only input (one video per '
                           'run), not with other inputs')
        video_info(args.inputs[0])  # a missing or unreadable video fails now
    elif args.fps is not None or args.plot:
        raise CLIError('--fps and --plot are for a video input')
    inferencer = ExpressionInferencer(
        args.config,
        args.checkpoint,
        device=args.device,
        align=args.align,
        align_mode=args.align_mode,
        classes=classes)
    if video:
        predictions = inferencer.predict_video(args.inputs[0],
                                               fps=args.fps,
                                               batch_size=args.batch_size,
                                               progress=True)
    else:
        predictions = inferencer(args.inputs,
                                 batch_size=args.batch_size,
                                 progress=True)
    if args.out:
        write_predictions(predictions, inferencer.classes, args.out)
    plot = args.plot or (video and args.out
                         and osp.splitext(args.out)[0] + '_timeline.png')
    if plot:
        save_video_timeline(predictions, inferencer.classes, plot,
                            osp.basename(args.inputs[0]))
    if args.out:
        failed = sum(p.error is not None for p in predictions)
        print(f'{len(predictions)} {"frames" if video else "images"} '
              f'({failed} without prediction) -> {args.out}' +
              (f', timeline: {plot}' if plot else ''))
    else:
        print(predictions_table(predictions, inferencer.classes))
        if plot:
            print(f'timeline: {plot}')


if __name__ == '__main__':
    main()
