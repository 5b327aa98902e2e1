"""Detect and align faces offline: 256x256 crops with the DMUE framing.

MTCNN (from the facenet-pytorch wheel, no download) gives five landmarks;
a similarity to the 5-point DMUE template (docs/align.md) warps each face
to 256x256. ``--mode crop`` makes the MS-Celeb-style pretraining crops
instead (the MTCNN box enlarged by 256/224, no alignment).

Examples::

    # a folder tree -> a mirrored folder of aligned crops (+ labels.txt)
    python tools/align.py photos/ --out data/aligned
    # RAF-DB's original photos -> an LMDB for the RAFDB dataset
    python tools/align.py data/RAF-DB/basic --dataset rafdb \\
        --out data/rafdb/rafdb.lmdb --device cuda
    # AffectNet (8 classes) into a folder
    python tools/align.py data/AffectNet --dataset affectnet --out data/an8

A rerun skips the images already done; failures are listed in report.tsv,
and alignment.jsonl records how every crop was made (source, face box and
score, the five landmarks, the 2x3 matrix; docs/align.md).
"""
import argparse
import os.path as osp

from dmue_mm.alignment import (FOLDER_LAYOUTS, MODES, AlignSettings,
                               list_affectnet, list_file, list_folder,
                               list_rafdb, run_alignment)
from dmue_mm.utils.cli import CLIError, cli_entry

DATASETS = ('auto', 'folder', 'list', 'rafdb', 'affectnet')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Detect and align faces to 256x256 crops',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        'input',
        help='image folder, list file ("path [label]" lines) or '
        'dataset root (with --dataset)')
    parser.add_argument(
        '--out',
        required=True,
        help='output folder, or an LMDB when the name ends with .lmdb')
    parser.add_argument('--dataset',
                        choices=DATASETS,
                        default='auto',
                        help='input kind; auto: a folder or a list file')
    parser.add_argument(
        '--folder-layout',
        choices=FOLDER_LAYOUTS,
        default='flat',
        help='labels of a folder: none, <class>/..., <split>/<class>/...')
    parser.add_argument(
        '--root',
        help='folder that a list file\'s relative paths start from '
        '(default: the list file\'s folder)')
    parser.add_argument('--split',
                        default='train',
                        help='split of a folder or list file (LMDB output)')
    parser.add_argument('--classes',
                        help='class names of a list file, comma-separated, in '
                        'label order')
    parser.add_argument('--affectnet-classes',
                        type=int,
                        choices=(7, 8),
                        default=8,
                        help='AffectNet-7 or AffectNet-8')
    parser.add_argument('--mode',
                        choices=MODES,
                        default='align',
                        help='align: DMUE template; crop: pretraining crop')
    parser.add_argument('--keep-all',
                        action='store_true',
                        help='every face (<name>_face<i>), not the largest')
    parser.add_argument('--no-refine',
                        action='store_true',
                        help='skip the second landmark pass (faster, less '
                        'precise)')
    parser.add_argument('--format',
                        choices=('png', 'jpeg'),
                        default='png',
                        help='image format of the crops')
    parser.add_argument('--jpeg-quality', type=int, default=95)
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--batch-size',
                        type=int,
                        default=16,
                        help='images of one size per MTCNN pass')
    parser.add_argument('--workers',
                        type=int,
                        default=2,
                        help='decoding processes')
    parser.add_argument('--max-size',
                        type=int,
                        default=1280,
                        help='longest side for detection (larger images are '
                        'downscaled; crops come from full resolution)')
    parser.add_argument('--min-face-size',
                        type=int,
                        default=20,
                        help='smallest face, in detection pixels')
    parser.add_argument('--report',
                        help='failure report (default <out>/report.tsv)')
    parser.add_argument('--retry-failed',
                        action='store_true',
                        help='retry images that failed in an earlier run')
    parser.add_argument('--overwrite',
                        action='store_true',
                        help='ignore earlier runs and redo everything')
    parser.add_argument('--no-progress',
                        action='store_true',
                        help='no progress bar')
    return parser.parse_args(argv)


def load_source(args: argparse.Namespace):
    """The input records for the chosen ``--dataset``."""
    kind = args.dataset
    if kind == 'auto':
        if osp.isdir(args.input):
            kind = 'folder'
        elif osp.isfile(args.input):
            kind = 'list'
        else:
            raise CLIError(f'input {args.input!r} not found: give an image '
                           'folder, a list file or a dataset root')
    if kind == 'folder':
        return list_folder(args.input, args.folder_layout, args.split)
    if kind == 'list':
        classes = args.classes.split(',') if args.classes else None
        return list_file(args.input, args.root, args.split, classes)
    if kind == 'rafdb':
        return list_rafdb(args.input)
    return list_affectnet(args.input, args.affectnet_classes)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    settings = AlignSettings(mode=args.mode,
                             keep_all=args.keep_all,
                             refine=not args.no_refine,
                             image_format=args.format,
                             jpeg_quality=args.jpeg_quality,
                             max_size=args.max_size,
                             min_face_size=args.min_face_size)
    summary = run_alignment(load_source(args),
                            args.out,
                            settings,
                            device=args.device,
                            batch_size=args.batch_size,
                            workers=args.workers,
                            report=args.report,
                            retry_failed=args.retry_failed,
                            overwrite=args.overwrite,
                            progress=not args.no_progress)
    print(summary.line())
    return summary


if __name__ == '__main__':
    main()
