"""DMUE vs. cross-entropy: cost of one training iteration, side by side.

Both models are ResNet-18 on the same batch (72 images of 224x224, 8
balanced classes), trained by MMEngine's ``train_step`` with the same Adam
(lr 1e-4, coupled weight decay 1e-4): data preprocessing, forward, backward
and the optimiser step are all timed.

* Time: both variants live in one process and alternate iteration by
  iteration (after warm-up iterations that also create the Adam state), so
  both see the same machine load; the table reports the median of each and
  the median of the per-pair ratios.
* Peak memory: each variant runs in a fresh subprocess (warm-up iterations,
  then measured ones); the metric is the process's peak resident memory
  (``ru_maxrss``) minus its resident memory right after the imports, i.e.
  everything the model, its optimiser state, the batch and the iterations
  made the process hold at its worst moment, allocator overheads included.
  torch's CPU tensors are invisible to ``tracemalloc``, so RSS is the honest
  portable measure.

Usage::

    python benchmarks/head_speed.py --repeats 5 --threads 1 \
        --out work_dirs/benchmarks/head_speed.json
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import torch

VARIANTS = ('ce', 'dmue')


def model_cfg(variant: str, num_classes: int) -> dict:
    """The two models compared: plain CE ResNet-18 and DMUE ResNet-18."""
    backbone = dict(type='ResNet', depth=18, out_indices=(3, ))
    preprocessor = dict(
        type='ClsDataPreprocessor',
        num_classes=num_classes,
        mean=[127.5] * 3,
        std=[127.5] * 3,
        to_rgb=True)
    if variant == 'ce':
        return dict(
            type='ImageClassifier',
            backbone=backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=num_classes,
                in_channels=512,
                loss=dict(type='CrossEntropyLoss')),
            data_preprocessor=preprocessor)
    return dict(
        type='DMUEClassifier',
        backbone=backbone,
        head=dict(type='DMUEHead', num_classes=num_classes),
        data_preprocessor=preprocessor)


def build(variant: str, num_classes: int):
    """Model and MMEngine optimiser wrapper of a variant."""
    import dmue_mm  # noqa: F401  registers the plugin
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    model = MODELS.build(model_cfg(variant, num_classes))
    model.init_weights()
    model.train()
    wrapper = build_optim_wrapper(
        model,
        dict(optimizer=dict(type='Adam', lr=1e-4, weight_decay=1e-4)))
    return model, wrapper


def make_batch(batch_size: int, num_classes: int, size: int) -> dict:
    """A class-balanced batch of random uint8 images, as a dataloader
    would deliver it."""
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(batch_size) % num_classes
    labels = labels[torch.randperm(batch_size, generator=gen)]
    images = torch.randint(
        0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=gen)
    return dict(
        inputs=list(images),
        data_samples=[DataSample().set_gt_label(int(y)) for y in labels])


def timed_step(model, wrapper, batch: dict) -> float:
    start = time.perf_counter()
    model.train_step(batch, wrapper)
    return time.perf_counter() - start


def measure_time(args) -> Dict[str, List[float]]:
    """Alternate the variants iteration by iteration in this process."""
    batch = make_batch(args.batch_size, args.num_classes, args.img_size)
    runs = {v: build(v, args.num_classes) for v in VARIANTS}
    times = {v: [] for v in VARIANTS}
    for step in range(args.warmup + args.repeats):
        for variant in (VARIANTS if step % 2 == 0 else VARIANTS[::-1]):
            seconds = timed_step(*runs[variant], batch)
            if step >= args.warmup:
                times[variant].append(seconds)
        print(f'step {step}: ' + ', '.join(
            f'{v} {times[v][-1]:.2f}s' for v in VARIANTS if times[v]),
              flush=True)
    return times


def memory_worker(args) -> None:
    """Run one variant in this fresh process and print its peak RSS delta."""
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    batch = make_batch(args.batch_size, args.num_classes, args.img_size)
    model, wrapper = build(args.memory_worker, args.num_classes)
    for _ in range(args.warmup + 1):
        model.train_step(batch, wrapper)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(dict(base_mib=base_kib / 1024, peak_mib=peak_kib / 1024,
                          delta_mib=(peak_kib - base_kib) / 1024)))


def measure_memory(args) -> Dict[str, dict]:
    """Peak-RSS deltas, one fresh subprocess per variant."""
    results = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, '--memory-worker', variant]
        for key in ('batch_size', 'num_classes', 'img_size', 'warmup',
                    'threads'):
            cmd += [f'--{key.replace("_", "-")}', str(getattr(args, key))]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch-size', type=int, default=72)
    parser.add_argument('--num-classes', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch intra-op threads (1 is steadiest on a shared machine)')
    parser.add_argument('--skip-memory', action='store_true')
    parser.add_argument(
        '--out', default='work_dirs/benchmarks/head_speed.json')
    parser.add_argument('--memory-worker', choices=VARIANTS,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        memory_worker(args)
        return {}
    times = measure_time(args)
    medians = {v: statistics.median(t) for v, t in times.items()}
    pair_ratios = [d / c for c, d in zip(times['ce'], times['dmue'])]
    result = dict(
        setup=dict(
            batch_size=args.batch_size,
            num_classes=args.num_classes,
            img_size=args.img_size,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            torch=torch.__version__),
        seconds=times,
        median_seconds=medians,
        time_ratio=medians['dmue'] / medians['ce'],
        median_pair_time_ratio=statistics.median(pair_ratios))
    if not args.skip_memory:
        memory = measure_memory(args)
        result['memory_mib'] = memory
        result['memory_ratio'] = (memory['dmue']['delta_mib'] /
                                  memory['ce']['delta_mib'])
    print_table(result)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {args.out}')
    return result


def print_table(result: dict) -> None:
    rows = [('variant', 'median s/iter', 'peak RSS delta MiB')]
    for v in VARIANTS:
        mem = result.get('memory_mib', {}).get(v, {}).get('delta_mib')
        rows.append((v, f'{result["median_seconds"][v]:.3f}',
                     '-' if mem is None else f'{mem:.0f}'))
    rows.append(('dmue / ce', f'{result["time_ratio"]:.3f}',
                 f'{result["memory_ratio"]:.3f}'
                 if 'memory_ratio' in result else '-'))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print('  '.join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(f'median of per-pair time ratios: '
          f'{result["median_pair_time_ratio"]:.3f}')


if __name__ == '__main__':
    main()
