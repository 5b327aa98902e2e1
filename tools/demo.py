"""End-to-end DMUE demo on bundled proxy data, on CPU, with no download.

1. pack scikit-learn's handwritten digits (they ship inside scikit-learn; a
   PROXY for expression data, not faces) into the plugin's LMDB format,
   upscaled to 16x16 RGB, with symmetric label noise on the training split;
2. train DMUE (``configs/demo/dmue_digits_proxy.py``) with ``tools/train.py``;
   ``BranchPruningHook`` prunes it to a plain classifier at the end;
3. test the pruned model with ``tools/test.py`` (metrics JSON and a
   confusion-matrix PNG);
4. print a short summary.

This is a pipeline demo on proxy data: its accuracy says nothing about
facial expressions. About 3 minutes on 2 CPU cores.

Example::

    python tools/demo.py --work-dir work_dirs/demo
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
from typing import Dict

import cv2
import numpy as np

from dmue_mm.datasets import LMDBWriter
from dmue_mm.utils.cli import cli_entry

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'dmue_digits_proxy.py')
CLASSES = [str(d) for d in range(10)]


def pack_digits_proxy(out_path: str,
                      noise: float = 0.2,
                      test_fraction: float = 0.3,
                      size: int = 16,
                      seed: int = 0) -> Dict[str, int]:
    """Pack scikit-learn's digits into an LMDB with noisy training labels.

    Args:
        out_path (str): LMDB folder to write (replaced if it exists).
        noise (float): Fraction of training labels replaced by a uniformly
            drawn other class (the test labels stay clean).
        test_fraction (float): Fraction of each class held out for testing.
        size (int): Output image size (bicubic upscaling of the 8x8 digits).
        seed (int): Seed of the split and of the noise.

    Returns:
        dict: Images per split and the number of flipped training labels.
    """
    from sklearn.datasets import load_digits
    digits = load_digits()
    rng = np.random.default_rng(seed)
    grey = (digits.images * (255.0 / 16.0)).astype(np.float32)
    is_test = np.zeros(len(grey), bool)
    for label in range(10):
        rows = rng.permutation(np.flatnonzero(digits.target == label))
        is_test[rows[:int(round(test_fraction * len(rows)))]] = True
    labels = digits.target.copy()
    train_rows = np.flatnonzero(~is_test)
    flipped = rng.choice(
        train_rows, int(round(noise * len(train_rows))), replace=False)
    shift = rng.integers(1, 10, len(flipped))
    labels[flipped] = (labels[flipped] + shift) % 10
    with LMDBWriter(
            out_path,
            CLASSES,
            image_format='png',
            resume=False,
            overwrite=True,
            extra_meta=dict(
                source='scikit-learn digits (proxy data)',
                label_noise=noise)) as writer:
        for index, img in enumerate(grey):
            big = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
            rgb = np.repeat(np.clip(big, 0, 255).astype(np.uint8)[..., None],
                            3, axis=2)
            split = 'test' if is_test[index] else 'train'
            writer.add(
                split,
                f'{index:04d}',
                rgb,
                int(labels[index]),
                extra=dict(clean_label=int(digits.target[index])))
    return dict(
        train=int((~is_test).sum()),
        test=int(is_test.sum()),
        flipped=len(flipped))


def run(args) -> None:
    print('$ ' + ' '.join(osp.relpath(a, ROOT) if osp.isabs(a) else a
                          for a in args[1:]), flush=True)
    subprocess.run(args, check=True, cwd=ROOT)


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(
        description='DMUE pipeline demo on proxy data (scikit-learn digits)')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--noise', type=float, default=0.2,
                        help='training label noise (default 0.2)')
    parser.add_argument('--epochs', type=int, default=24)
    args = parser.parse_args(argv)
    work_dir = osp.abspath(args.work_dir)
    lmdb_path = osp.join(work_dir, 'digits_proxy.lmdb')

    counts = pack_digits_proxy(lmdb_path, noise=args.noise)
    print(f'[1/3] packed scikit-learn digits (proxy data) into {lmdb_path}: '
          f'{counts["train"]} train images ({counts["flipped"]} labels '
          f'flipped, {args.noise:.0%} noise), {counts["test"]} clean test '
          'images', flush=True)

    options = [
        f'{loader}.dataset.data_root={lmdb_path}'
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader')
    ]
    print('[2/3] training DMUE, pruned at the end by BranchPruningHook',
          flush=True)
    run([
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'), CONFIG, '--work-dir', work_dir,
        '--cfg-options', f'train_cfg.max_epochs={args.epochs}', *options
    ])

    deploy_dir = osp.join(work_dir, 'deploy')
    metrics_path = osp.join(work_dir, 'pruned_metrics.json')
    png_path = osp.join(work_dir, 'pruned_confusion_matrix.png')
    print('[3/3] testing the pruned (plain classifier) model', flush=True)
    run([
        sys.executable,
        osp.join(ROOT, 'tools', 'test.py'),
        osp.join(deploy_dir, 'deploy.py'),
        osp.join(deploy_dir, 'last.pth'), '--work-dir', work_dir, '--out',
        metrics_path, '--cm-png', png_path
    ])
    with open(metrics_path) as f:
        metrics = json.load(f)
    print('\n== DMUE demo summary (PROXY data: scikit-learn digits, '
          f'{args.noise:.0%} training label noise) ==')
    for key, label in (('top1', 'top-1 accuracy'),
                       ('mean_class_acc', 'mean class accuracy'),
                       ('nll', 'NLL'), ('ece', 'ECE')):
        value = metrics.get(f'expression/{key}')
        if value is not None:
            print(f'pruned model {label}: {value:.4g}')
    print(f'pruned model: {osp.join(deploy_dir, "last.pth")} '
          f'(config {osp.join(deploy_dir, "deploy.py")})')
    print(f'confusion matrix: {png_path}')
    print(f'metrics: {metrics_path}')


if __name__ == '__main__':
    main()
