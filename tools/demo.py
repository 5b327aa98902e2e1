"""End-to-end pipeline demo on generated data (no download).

Generates a small 4-class image folder, trains the cross-entropy ResNet-18
baseline for 2 epochs with tools/train.py's code path, and evaluates it.
This is a pipeline check on synthetic proxy data, not an expression result.
"""
import argparse
import os.path as osp
import subprocess
import sys

from dmue_mm.utils import write_image_folder
from dmue_mm.utils.cli import cli_entry

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@cli_entry
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    args = parser.parse_args(argv)

    data_root = osp.join(args.work_dir, 'data')
    counts = write_image_folder(data_root, ['a', 'b', 'c', 'd'],
                                {'train': 10, 'val': 4})
    print(f'generated {counts} images under {data_root}')
    config = osp.join(ROOT, 'configs', 'baseline', 'res18_ce_generated.py')
    options = [
        f'{field}.dataset.data_root={data_root}'
        for field in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]
    subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'), config, '--work-dir',
        args.work_dir, '--cfg-options', *options
    ],
                   check=True)


if __name__ == '__main__':
    main()
