"""Alignment speed: images per second of the ``tools/align.py`` pipeline
against MTCNN's own detection time on the same images.

Inputs: ``--images`` (default 104) JPEG files of ``--size`` x ``--size``
pixels (default 640) made from the real photos that ship with matplotlib
(Grace Hopper) and scikit-image (the astronaut): each photo is scaled to
``--size`` on its longest side, mirrored on every other pair of images, and
tiled (wrapped around) from a varying offset of up to 1/8 of the size, so
that each image holds one face at a different position. All have the same
size, as the frames of a video or a resized dataset have.

Measured, in one process with ``--threads`` torch threads, in rounds that
run every variant once (so all see the same machine load):

* ``pipeline``: :func:`dmue_mm.alignment.run_alignment` (what
  ``tools/align.py`` runs: decoding in ``--workers`` processes, batched
  MTCNN, refinement pass, warp, PNG written atomically, journal, report,
  alignment records) into a fresh folder; the detector is built once,
  outside the timing (the tool loads it once per run);
* ``pipeline --no-refine``: the same without the refinement pass;
* ``pipeline --max-size 320``: detection on a copy downscaled to 320 px
  (the refinement pass and the warp still use the full-resolution image);
* ``mtcnn``: facenet-pytorch's ``MTCNN.detect`` on the decoded images, one
  image per call (its own detection, nothing else: no decoding, no
  alignment, no writing);
* ``mtcnn batched``: ``MTCNN.detect`` on lists of ``--batch-size``
  same-size images.

The table gives images/s (median over rounds, min-max) and, per round, the
ratio of each variant's time to ``mtcnn``'s (median, min-max). Wall-clock
time; the machine should be otherwise idle.

Usage::

    python benchmarks/align_speed.py --threads 2 \
        --out benchmarks/results/align_speed/cpu_2threads.json
    # quick check (a few small images, one round)
    python benchmarks/align_speed.py --images 4 --size 160 --repeats 1
"""
import argparse
import os
import os.path as osp
import tempfile
import time
from typing import Dict, List

import cv2
import numpy as np
import torch
from PIL import Image

VARIANTS = ('pipeline', 'pipeline --no-refine', 'pipeline --max-size 320',
            'mtcnn', 'mtcnn batched')
BASELINE = 'mtcnn'


def make_images(count: int, size: int) -> List[np.ndarray]:
    """``count`` (size, size, 3) uint8 RGB images: tiled and mirrored
    copies of the shipped photos (see the module docstring)."""
    from dmue_mm.alignment import sample_photos
    photos = list(sample_photos().values())
    out = []
    for k in range(count):
        photo = photos[k % len(photos)]
        if (k // len(photos)) % 2:
            photo = np.ascontiguousarray(photo[:, ::-1])
        scale = size / max(photo.shape[:2])
        photo = cv2.resize(photo, (max(1, round(photo.shape[1] * scale)),
                                   max(1, round(photo.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA
                           if scale < 1 else cv2.INTER_CUBIC)
        tiled = np.tile(photo, (2, 2, 1))
        shift = max(1, size // 8)
        dy, dx = (k * 37) % shift, (k * 53) % shift
        out.append(np.ascontiguousarray(tiled[dy:dy + size, dx:dx + size]))
    return out


def write_inputs(images: List[np.ndarray], folder: str) -> None:
    """The images as JPEG files (quality 95), as a dataset holds them."""
    os.makedirs(folder, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(osp.join(folder, f'img_{i:04d}.jpg'),
                                  quality=95)


def time_pipeline(folder: str, out: str, detector, settings, workers: int,
                  batch_size: int) -> float:
    """Seconds of one ``run_alignment`` over ``folder`` (fresh output)."""
    from dmue_mm.alignment import list_folder, run_alignment
    source = list_folder(folder)
    start = time.perf_counter()
    summary = run_alignment(source,
                            out,
                            settings,
                            batch_size=batch_size,
                            workers=workers,
                            overwrite=True,
                            progress=False,
                            detector=detector)
    seconds = time.perf_counter() - start
    if summary.aligned + summary.failed != len(source.records):
        raise RuntimeError(f'pipeline processed {summary.processed} of '
                           f'{len(source.records)} images')
    return seconds


def time_mtcnn(mtcnn, images: List[np.ndarray], batch_size: int) -> float:
    """Seconds of facenet-pytorch's ``MTCNN.detect`` over the images."""
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            mtcnn.detect(chunk if batch_size > 1 else chunk[0])
    return time.perf_counter() - start


def measure(args) -> Dict[str, List[float]]:
    """Seconds per round of every variant."""
    from facenet_pytorch import MTCNN

    from dmue_mm.alignment import AlignSettings, FaceDetector, load_rgb
    images = make_images(args.images, args.size)
    seconds: Dict[str, List[float]] = {v: [] for v in args.variants}
    settings = {
        'pipeline': AlignSettings(),
        'pipeline --no-refine': AlignSettings(refine=False),
        'pipeline --max-size 320': AlignSettings(max_size=320),
    }
    with tempfile.TemporaryDirectory(prefix='align_speed_') as tmp:
        folder = osp.join(tmp, 'in')
        write_inputs(images, folder)
        decoded = [load_rgb(osp.join(folder, n))
                   for n in sorted(os.listdir(folder))]
        detector = FaceDetector(batch_size=args.batch_size)
        mtcnn = MTCNN(keep_all=True, device='cpu').eval()

        def run(name: str, r: int) -> float:
            if name.startswith('pipeline'):
                return time_pipeline(folder, osp.join(tmp, f'out{r}_{name}'),
                                     detector, settings[name], args.workers,
                                     args.batch_size)
            return time_mtcnn(mtcnn, decoded,
                              args.batch_size if 'batched' in name else 1)

        for batch in (1, 2):  # warm-up
            time_mtcnn(mtcnn, decoded[:2], batch)
        for r in range(args.repeats):
            for name in args.variants:
                seconds[name].append(run(name, r))
                print(f'round {r + 1}/{args.repeats} {name}: '
                      f'{args.images / seconds[name][-1]:.2f} images/s',
                      flush=True)
    return seconds


def summarise(args, seconds: Dict[str, List[float]]) -> dict:
    """Images/s and per-round time ratios to ``mtcnn``."""
    from dmue_mm.evaluation.report import spread
    base = seconds[BASELINE]
    results = {}
    for name, values in seconds.items():
        results[name] = dict(
            seconds=values,
            images_per_s=spread([args.images / s for s in values]),
            time_ratio_to_mtcnn=spread([s / b for s, b in zip(values, base)]))
    return dict(setup=dict(variants=args.variants,
                           images=args.images,
                           size=args.size,
                           threads=args.threads,
                           workers=args.workers,
                           batch_size=args.batch_size,
                           repeats=args.repeats,
                           cpus=len(os.sched_getaffinity(0)),
                           omp_wait_policy=os.environ.get('OMP_WAIT_POLICY'),
                           torch=torch.__version__),
                results=results)


def print_table(result: dict) -> None:
    from dmue_mm.evaluation.report import format_markdown_table

    def cell(spread, fmt):
        return (f'{spread["median"]:{fmt}} '
                f'[{spread["min"]:{fmt}}-{spread["max"]:{fmt}}]')

    rows = [[
        name,
        cell(row['images_per_s'], '.2f'),
        cell(row['time_ratio_to_mtcnn'], '.2f')
    ] for name, row in result['results'].items()]
    print(
        format_markdown_table(
            ['variant', 'images/s [min-max]', 'time / mtcnn [min-max]'],
            rows))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=104)
    parser.add_argument('--size', type=int, default=640)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--workers',
                        type=int,
                        default=1,
                        help='decoding processes of the pipeline')
    parser.add_argument('--batch-size',
                        type=int,
                        default=16,
                        help='images per MTCNN pass (pipeline and mtcnn '
                        'batched)')
    parser.add_argument('--variants',
                        nargs='+',
                        choices=VARIANTS,
                        default=list(VARIANTS),
                        help=f'what to time ({BASELINE!r}, the baseline of '
                        'the ratios, is always added)')
    parser.add_argument('--out', help='JSON result file')
    args = parser.parse_args(argv)
    args.variants = [BASELINE] + [v for v in args.variants if v != BASELINE]
    if args.images < 1 or args.repeats < 1:
        parser.error('--images and --repeats must be >= 1')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    result = summarise(args, measure(args))
    print_table(result)
    if args.out:
        from dmue_mm.utils.fileio import write_json
        write_json(args.out, result)
        print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
