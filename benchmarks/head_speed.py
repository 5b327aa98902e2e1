"""DMUE vs. cross-entropy: cost of one training iteration, side by side.

Three ResNet-18 models train on the same batch (72 images of 224x224, 8
balanced classes) with MMEngine's ``train_step`` and the same Adam (lr 1e-4,
coupled weight decay 1e-4); preprocessing, forward, backward and the
optimiser step are all measured:

* ``ce``: MMPretrain's ImageClassifier, GAP + LinearClsHead, cross-entropy;
* ``dmue``: this plugin's DMUEClassifier / DMUEHead;
* ``released``: the released code's algorithm on the same modules (one copy
  of the trunk rows per branch, the latent-distribution pass
  run with autograd and its graph kept until the step ends), to put the
  ratios in context: the issue quotes 2.05x time / 1.59x memory for the
  original on its machine.

Time: the variants live in one process and run round-robin, iteration by
iteration, in a rotating order (after warm-up rounds that also create the
Adam state), so all see the same machine load. The wall-clock time and the
process CPU time of each iteration are recorded; the table shows medians
and the ratios to ``ce``. With one torch thread (the default) the CPU time
is the steadier measure on a shared machine; both are reported.

Peak memory: each variant runs in fresh subprocesses (warm-up iterations,
then one measured). The metric is the peak resident memory (``VmHWM``)
minus the resident memory right after the imports: what the model, its
optimiser state, the batch and the iterations made the process hold at the
worst moment. torch's CPU tensors are invisible to ``tracemalloc``; RSS is
the portable measure. glibc's adaptive mmap threshold would keep large freed
blocks in the heap and make RSS depend on allocation history, so every
worker runs with ``MALLOC_MMAP_THRESHOLD_=131072`` (large tensors are mapped
and unmapped), and the median of ``--memory-runs`` workers is reported.

Usage::

    python benchmarks/head_speed.py --repeats 5 \
        --out work_dirs/benchmarks/head_speed.json
"""
import argparse
import json
import logging
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import torch
import torch.nn.functional as F

VARIANTS = ('ce', 'dmue', 'released')
MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': '131072'}


def register_released_head():
    """Register ``ReleasedStyleDMUEHead`` (benchmark only)."""
    from mmpretrain.registry import MODELS

    from dmue_mm.models.heads import DMUEHead, class_similarity_features
    from dmue_mm.models.losses import latent_distribution

    if 'ReleasedStyleDMUEHead' in MODELS.module_dict:
        return

    @MODELS.register_module()
    class ReleasedStyleDMUEHead(DMUEHead):
        """The released code's per-step work on DMUEHead's modules."""

        def _loss_terms(self, inputs, f, labels, run_branch):
            K, B = self.num_classes, labels.numel()
            h = self._neck(self.dropout(f))
            z = self.fc(h)
            onehot = F.one_hot(labels, K).float()
            similarity = class_similarity_features(f, f, labels, K)
            score = torch.sigmoid(
                self.uncertainty_mlp(torch.cat([similarity, onehot], 1)))
            wce = F.cross_entropy(score * z, labels)
            # latent distributions: with autograd, graph kept (as released)
            self.retained, targets = [], torch.zeros(B, K)
            for c in labels.unique().tolist():
                rows = (labels == c).nonzero()[:, 0]
                s = self.aux_fcs[c](self._neck(
                    run_branch(c, inputs.take(rows))))
                self.retained.append(s)
                targets[rows] = latent_distribution(s, c,
                                                    self.temperature).detach()
            soft = ((F.softmax(z, 1) * (1 - onehot) - targets)**2).mean()
            gram, aux, sp = h @ h.t(), 0.0, 0.0
            for c in range(K):
                rows = (labels != c).nonzero()[:, 0]
                a = self.aux_fcs[c](self._neck(self.dropout(
                    run_branch(c, inputs.take(rows)))))
                y = labels[rows] - (labels[rows] > c).long()
                aux = aux + F.cross_entropy(a, y) / K
                sp = sp + F.mse_loss(
                    F.normalize(a @ a.t(), dim=1),
                    F.normalize(gram[rows][:, rows], dim=1)) / K
            return dict(wce=wce, soft=soft, sp=sp, aux=aux), score


def model_cfg(variant: str, num_classes: int) -> dict:
    """The compared models (see the module docstring)."""
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
    head = 'DMUEHead' if variant == 'dmue' else 'ReleasedStyleDMUEHead'
    return dict(
        type='DMUEClassifier',
        backbone=backbone,
        head=dict(type=head, num_classes=num_classes),
        data_preprocessor=preprocessor)


def build(variant: str, num_classes: int):
    """Model and MMEngine optimiser wrapper of a variant."""
    import dmue_mm  # noqa: F401  registers the plugin
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    register_released_head()
    model = MODELS.build(model_cfg(variant, num_classes))
    logger = MMLogger.get_current_instance()
    logger.setLevel(logging.WARNING)  # no per-parameter init report
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


def timed_step(model, wrapper, batch: dict) -> Dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    model.train_step(batch, wrapper)
    return dict(wall=time.perf_counter() - wall,
                cpu=time.process_time() - cpu)


def measure_time(args) -> Dict[str, Dict[str, List[float]]]:
    """Round-robin over the variants, rotating the order every round."""
    batch = make_batch(args.batch_size, args.num_classes, args.img_size)
    runs = {v: build(v, args.num_classes) for v in args.variants}
    times = {v: dict(wall=[], cpu=[]) for v in args.variants}
    for step in range(args.warmup + args.repeats):
        shift = step % len(args.variants)
        for variant in args.variants[shift:] + args.variants[:shift]:
            seconds = timed_step(*runs[variant], batch)
            if step >= args.warmup:
                for kind, value in seconds.items():
                    times[variant][kind].append(value)
        if step >= args.warmup:
            print(f'round {step - args.warmup}: ' + ', '.join(
                f'{v} {times[v]["wall"][-1]:.2f}s wall '
                f'{times[v]["cpu"][-1]:.2f}s cpu' for v in args.variants),
                  flush=True)
    return times


def peak_rss_kib() -> int:
    """This process's resident-memory high-water mark.

    ``VmHWM`` is reset by ``execve``; ``ru_maxrss`` is not (a subprocess
    would start from its parent's peak), so it is only the fallback.
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_worker(args) -> None:
    """Run one variant in this fresh process; print its peak RSS delta."""
    base_kib = peak_rss_kib()
    batch = make_batch(args.batch_size, args.num_classes, args.img_size)
    model, wrapper = build(args.memory_worker, args.num_classes)
    for _ in range(args.warmup + 1):
        model.train_step(batch, wrapper)
    print(json.dumps(dict(delta_mib=(peak_rss_kib() - base_kib) / 1024)))


def measure_memory(args) -> Dict[str, List[float]]:
    """Peak-RSS deltas (MiB), fresh subprocesses, variants interleaved."""
    deltas = {v: [] for v in args.variants}
    for _ in range(args.memory_runs):
        for variant in args.variants:
            cmd = [sys.executable, osp.abspath(__file__),
                   '--memory-worker', variant]
            for key in ('batch_size', 'num_classes', 'img_size', 'warmup',
                        'threads'):
                cmd += [f'--{key.replace("_", "-")}',
                        str(getattr(args, key))]
            out = subprocess.run(
                cmd, check=True, capture_output=True, text=True,
                env=dict(os.environ, **MALLOC_ENV))
            line = out.stdout.strip().splitlines()[-1]
            deltas[variant].append(json.loads(line)['delta_mib'])
            print(f'memory {variant}: {deltas[variant][-1]:.0f} MiB',
                  flush=True)
    return deltas


def summarise(args, times, memory) -> dict:
    base = 'ce'
    result = dict(
        setup=dict(
            batch_size=args.batch_size,
            num_classes=args.num_classes,
            img_size=args.img_size,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            memory_runs=args.memory_runs,
            torch=torch.__version__),
        seconds=times,
        median_seconds={
            v: {k: statistics.median(t[k]) for k in t}
            for v, t in times.items()
        })
    med = result['median_seconds']
    result['time_ratio'] = {
        v: {k: med[v][k] / med[base][k] for k in med[v]}
        for v in args.variants if v != base
    }
    if memory:
        result['memory_mib'] = memory
        result['median_memory_mib'] = {
            v: statistics.median(m) for v, m in memory.items()}
        mem = result['median_memory_mib']
        result['memory_ratio'] = {
            v: mem[v] / mem[base] for v in args.variants if v != base}
    return result


def print_table(result: dict) -> None:
    med, mem = result['median_seconds'], result.get('median_memory_mib', {})
    rows = [('variant', 'wall s/iter', 'cpu s/iter', 'peak MiB',
             'wall ratio', 'cpu ratio', 'memory ratio')]
    for v, t in med.items():
        ratio = result['time_ratio'].get(v)
        rows.append((v, f'{t["wall"]:.2f}', f'{t["cpu"]:.2f}',
                     f'{mem[v]:.0f}' if v in mem else '-',
                     f'{ratio["wall"]:.3f}' if ratio else '1',
                     f'{ratio["cpu"]:.3f}' if ratio else '1',
                     f'{result["memory_ratio"][v]:.3f}'
                     if v in result.get('memory_ratio', {}) else
                     ('1' if v in mem else '-')))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print('  '.join(cell.ljust(w) for cell, w in zip(row, widths)))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch-size', type=int, default=72)
    parser.add_argument('--num-classes', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch intra-op threads (1 is steadiest on a shared machine)')
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS),
                        choices=VARIANTS)
    parser.add_argument('--memory-runs', type=int, default=2,
                        help='fresh processes per variant (0: skip memory)')
    parser.add_argument(
        '--out', default='work_dirs/benchmarks/head_speed.json')
    parser.add_argument('--memory-worker', choices=VARIANTS,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if 'ce' not in args.variants:
        parser.error('--variants must include the baseline ce')
    args.variants = ['ce'] + [v for v in args.variants if v != 'ce']
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        memory_worker(args)
        return {}
    times = measure_time(args)
    memory = measure_memory(args) if args.memory_runs > 0 else {}
    result = summarise(args, times, memory)
    print_table(result)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
