"""Read + decode throughput: our LMDB vs. a folder of the same JPEG files.

Generated 256x256 images are written as JPEG files in a folder tree
``split/class/*.jpg`` and packed with ``tools/pack_lmdb.py``'s folder layout
into two LMDBs: ``--format jpeg`` (the very same JPEG bytes: only the
storage differs) and ``--format png`` (lossless). Then, in one process and
alternating rounds so that all variants see the same machine load, it
measures images per second of

* ``read``: only read the bytes: ``open().read()`` per file vs. one LMDB
  ``get`` per key (the storage overhead alone);
* ``raw``: read the bytes and decode them with OpenCV;
* ``dataset``: the whole ``dataset[i]`` of MMPretrain (pipeline
  ``PackInputs`` only): ``CustomDataset`` + ``LoadImageFromFile`` on the
  folder vs. our ``ExpressionLMDBDataset``.

The table gives the median over rounds and the LMDB / folder ratio (> 1:
the LMDB is faster). OpenCV and torch use one thread, as in a DataLoader
worker. Every round reads all images once, after a warm-up
round, so the files are in the page cache: this measures the per-image
overheads (open/stat/close vs. a B-tree lookup), not disk or network
latency, where one big file helps the LMDB further.

Usage::

    python benchmarks/lmdb_read.py --images 2000 --rounds 5 \
        --out work_dirs/benchmarks/lmdb_read.json
"""
import argparse
import os
import os.path as osp
import statistics
import tempfile
import time
from typing import Callable, Dict, List

import cv2
import numpy as np
import torch

import dmue_mm  # noqa: F401  registers the datasets
from dmue_mm.datasets import LMDBReader
from dmue_mm.datasets.lmdb_io import image_key
from dmue_mm.datasets.packers import folder_layout, pack_layout
from dmue_mm.utils import write_image_folder
from dmue_mm.utils.fileio import write_json
from mmpretrain.registry import DATASETS

NUM_CLASSES = 8


def make_data(root: str, num_images: int, size: int) -> Dict[str, str]:
    """The JPEG folder and the two LMDBs packed from it."""
    classes = [f'class{i}' for i in range(NUM_CLASSES)]
    folder = osp.join(root, 'folder')
    write_image_folder(
        folder,
        classes, {'train': max(1, num_images // NUM_CLASSES)},
        size=size,
        ext='.jpg')
    paths = {'folder': osp.join(folder, 'train')}
    for image_format in ('jpeg', 'png'):
        paths[image_format] = osp.join(root, f'{image_format}.lmdb')
        pack_layout(
            folder_layout(folder, {'train': 'train'}, classes),
            paths[image_format],
            image_format=image_format,
            progress=False)
    return paths


def readers(paths: Dict[str, str]) -> Dict[str, Callable[[], int]]:
    """One callable per variant; each reads and decodes every image once."""
    files = sorted(
        osp.join(dirpath, name)
        for dirpath, _, names in os.walk(paths['folder']) for name in names)
    keys = [
        image_key('train',
                  osp.relpath(f, paths['folder']).replace(os.sep, '/'))
        for f in files
    ]

    def decode(buf: bytes) -> None:
        cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)

    def from_files(process: Callable[[bytes], None]) -> Callable[[], int]:

        def run() -> int:
            for path in files:
                with open(path, 'rb') as f:
                    process(f.read())
            return len(files)

        return run

    def from_lmdb(path: str, process: Callable[[bytes],
                                               None]) -> Callable[[], int]:
        reader = LMDBReader(path)

        def run() -> int:
            for key in keys:
                process(reader.get(key))
            return len(keys)

        return run

    def ignore(buf: bytes) -> None:
        del buf

    def dataset(cfg: dict, loading: tuple = ()) -> Callable[[], int]:
        ds = DATASETS.build(
            dict(cfg, pipeline=[*loading, dict(type='PackInputs')]))

        def run() -> int:
            for i in range(len(ds)):
                ds[i]
            return len(ds)

        return run

    variants = {
        'read/folder': from_files(ignore),
        'raw/folder': from_files(decode),
        'dataset/folder': dataset(
            dict(type='CustomDataset', data_root=paths['folder']),
            loading=(dict(type='LoadImageFromFile'), )),
    }
    for image_format in ('jpeg', 'png'):
        path = paths[image_format]
        variants[f'read/lmdb-{image_format}'] = from_lmdb(path, ignore)
        variants[f'raw/lmdb-{image_format}'] = from_lmdb(path, decode)
        variants[f'dataset/lmdb-{image_format}'] = dataset(
            dict(type='ExpressionLMDBDataset', data_root=path))
    return variants


def measure(variants: Dict[str, Callable[[], int]],
            rounds: int) -> Dict[str, List[float]]:
    """Images per second of each variant, per round (alternating)."""
    for run in variants.values():  # warm-up: page cache, lazy opens
        run()
    speeds: Dict[str, List[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            count = run()
            speeds[name].append(count / (time.perf_counter() - start))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=2000)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument(
        '--out', default='work_dirs/benchmarks/'
        'lmdb_read.json')
    args = parser.parse_args()
    # one thread, as in a DataLoader worker: torch's intra-op threads make
    # PackInputs' permute().contiguous() slow and noisy on a busy machine
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        paths = make_data(root, args.images, args.size)
        sizes = {
            name:
            sum(
                osp.getsize(osp.join(d, f)) for d, _, fs in os.walk(path)
                for f in fs)
            for name, path in paths.items()
        }
        speeds = measure(readers(paths), args.rounds)
    medians = {name: statistics.median(v) for name, v in speeds.items()}
    rows = []
    for level in ('read', 'raw', 'dataset'):
        base = medians[f'{level}/folder']
        for name in (f'{level}/folder', f'{level}/lmdb-jpeg',
                     f'{level}/lmdb-png'):
            rows.append(
                dict(
                    variant=name,
                    images_per_s=medians[name],
                    ratio_vs_folder=medians[name] / base))
    print(f'{args.images} images of {args.size}x{args.size}, '
          f'{args.rounds} rounds (median), warm page cache, 1 process')
    print(f'{"variant":<20}{"images/s":>10}{"x folder":>10}')
    for row in rows:
        print(f'{row["variant"]:<20}{row["images_per_s"]:>10.0f}'
              f'{row["ratio_vs_folder"]:>10.2f}')
    print('bytes on disk: ' + ', '.join(f'{k} {v / 2**20:.1f} MiB'
                                        for k, v in sizes.items()))
    write_json(
        args.out,
        dict(settings=vars(args), rows=rows, rounds=speeds, bytes=sizes))
    print(f'written {args.out}')


if __name__ == '__main__':
    main()
