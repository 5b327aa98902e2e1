"""Pack a facial-expression dataset from its official release into an LMDB.

One subcommand per layout (see docs/datasets.md):

    python tools/pack_lmdb.py rafdb data/raw/RAF-DB/basic \\
        -o data/rafdb/rafdb.lmdb
    python tools/pack_lmdb.py affectnet data/raw/AffectNet --classes 8 \\
        -o data/affectnet8/affectnet8.lmdb --resize 256 --format jpeg
    python tools/pack_lmdb.py ferplus fer2013.csv fer2013new.csv \\
        -o data/ferplus/ferplus.lmdb
    python tools/pack_lmdb.py folder data/raw/SFEW --splits Train=train \\
        Val=test -o data/sfew/sfew.lmdb
    python tools/pack_lmdb.py list --list train=train.txt \\
        --list test=test.txt --image-root imgs --classes a,b,c \\
        -o data/mine/mine.lmdb
    python tools/pack_lmdb.py original lmdb_dir lb2.txt -o data/x/x.lmdb

The LMDB is written under ``<out>.partial`` and renamed when complete;
``--resume`` continues an interrupted pack. Unreadable images are listed in
``<out>.unreadable.txt`` (or ``--report``) and counted at the end.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence, Union

from dmue_mm.datasets.packers import (affectnet_layout, ferplus_layout,
                                      folder_layout, list_layout,
                                      original_layout, pack_layout,
                                      rafdb_layout)
from dmue_mm.utils.cli import CLIError, cli_entry


def class_list(text: str) -> Union[int, List[str]]:
    """``--classes``: a count, a file with one name per line, or
    comma-separated names."""
    if text.isdigit():
        return int(text)
    if osp.isfile(text):
        with open(text, encoding='utf-8') as f:
            return [line.strip() for line in f if line.strip()]
    return [c.strip() for c in text.split(',') if c.strip()]


def key_values(items: Optional[Sequence[str]], option: str) -> dict:
    """``A=b`` items to a dict, in order."""
    pairs = {}
    for item in items or ():
        key, sep, value = item.partition('=')
        if not (sep and key and value):
            raise CLIError(f'{option} takes NAME=VALUE items, got {item!r}')
        pairs[key] = value
    return pairs


def parse_args(argv=None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        '-o', '--out', required=True, help='the LMDB folder to write')
    common.add_argument(
        '--format',
        choices=['png', 'jpeg'],
        default='png',
        help='image encoding (png is lossless; files already '
        'in the format are stored as they are)')
    common.add_argument('--jpeg-quality', type=int, default=95)
    common.add_argument(
        '--resize',
        type=int,
        metavar='N',
        help='resize every image to N x N (bicubic)')
    common.add_argument(
        '--resume',
        action='store_true',
        help='continue an interrupted pack (<out>.partial)')
    common.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an existing output LMDB')
    common.add_argument(
        '--report',
        help='unreadable-image report (default '
        '<out>.unreadable.txt)')
    common.add_argument(
        '--commit-every',
        type=int,
        default=256,
        help='images per LMDB transaction')
    common.add_argument('--no-progress', action='store_true')

    parser = argparse.ArgumentParser(
        description='Pack a dataset into an LMDB (docs/datasets.md)')
    sub = parser.add_subparsers(dest='layout', required=True)
    p = sub.add_parser('rafdb', parents=[common], help='RAF-DB basic')
    p.add_argument('root', help='the RAF-DB "basic" folder')
    p.add_argument(
        '--image-dir',
        default='Image/aligned',
        help='image folder relative to basic (or absolute)')
    p.add_argument(
        '--suffix',
        default='_aligned',
        help='suffix added to listed stems ("" for original '
        'images)')
    p = sub.add_parser(
        'affectnet',
        parents=[common],
        help='AffectNet manually annotated csv files')
    p.add_argument('root', help='folder with Manually_Annotated_file_lists')
    p.add_argument('--classes', type=int, choices=[7, 8], required=True)
    p.add_argument('--image-dir', default='Manually_Annotated_Images')
    p = sub.add_parser(
        'ferplus', parents=[common], help='fer2013.csv + fer2013new.csv')
    p.add_argument('fer2013_csv')
    p.add_argument('ferplus_csv')
    p = sub.add_parser(
        'folder',
        parents=[common],
        help='folder tree split/class/image (e.g. SFEW)')
    p.add_argument('root')
    p.add_argument(
        '--splits',
        nargs='+',
        metavar='FOLDER=SPLIT',
        help='split folders and their names (default: every '
        'sub-folder, lower-cased)')
    p.add_argument(
        '--classes',
        type=class_list,
        help='class folders in label order (default: sorted)')
    p = sub.add_parser(
        'list', parents=[common], help='"<path> <label>" list files')
    p.add_argument(
        '--list',
        dest='lists',
        nargs='+',
        action='extend',
        required=True,
        metavar='SPLIT=FILE',
        help='a list file per split: --list train=a.txt test=b.txt (or '
        'repeated: --list train=a.txt --list test=b.txt)')
    p.add_argument(
        '--image-root',
        required=True,
        help='folder the listed paths are relative to')
    p.add_argument(
        '--classes',
        type=class_list,
        required=True,
        help='names (comma-separated or a file) or a count')
    p = sub.add_parser(
        'original',
        parents=[common],
        help='the original DMUE LMDB + list file')
    p.add_argument('lmdb')
    p.add_argument('list_file')
    p.add_argument(
        '--classes',
        type=class_list,
        help='class names in label order (default: unnamed, '
        'largest label + 1)')
    return parser.parse_args(argv)


def build_layout(args: argparse.Namespace):
    """The layout that the subcommand names."""
    if args.layout == 'rafdb':
        return rafdb_layout(args.root, args.image_dir, args.suffix)
    if args.layout == 'affectnet':
        return affectnet_layout(args.root, args.classes, args.image_dir)
    if args.layout == 'ferplus':
        return ferplus_layout(args.fer2013_csv, args.ferplus_csv)
    if args.layout == 'folder':
        splits = key_values(args.splits, '--splits') or None
        return folder_layout(args.root, splits, args.classes)
    if args.layout == 'list':
        return list_layout(
            key_values(args.lists, '--list'), args.image_root, args.classes)
    classes = args.classes
    if isinstance(classes, int):
        raise CLIError('original --classes takes names; without them the '
                       'classes are counted from the list')
    return original_layout(args.lmdb, args.list_file, classes)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    layout = build_layout(args)
    try:
        summary = pack_layout(
            layout,
            args.out,
            image_format=args.format,
            jpeg_quality=args.jpeg_quality,
            resize=args.resize,
            resume=args.resume,
            overwrite=args.overwrite,
            report_path=args.report,
            commit_every=args.commit_every,
            progress=not args.no_progress)
    except BaseException:
        partial = osp.normpath(args.out) + '.partial'
        if osp.isdir(partial):
            print(
                f'the unfinished pack is kept in {partial}: rerun with '
                '--resume to continue it',
                file=sys.stderr)
        raise
    counts = ', '.join(f'{s} {n}' for s, n in summary.counts.items())
    print(f'packed {summary.out_path}: {counts} '
          f'({summary.written} written now, {summary.resumed} resumed)')
    for split, reasons in summary.dropped.items():
        if reasons:
            detail = ', '.join(f'{r}: {n}' for r, n in reasons.items())
            print(f'dropped from {split}: {detail}')
    print(f'{summary.unreadable} unreadable images listed in '
          f'{summary.report_path}')


if __name__ == '__main__':
    main()
