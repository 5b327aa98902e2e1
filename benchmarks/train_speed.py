"""DMUE vs. cross-entropy: cost of one training iteration, side by side.

For each class count ``K`` (``--num-classes``, default 7 and 8), ResNet-18
models train on the same batch (72 images of 224x224, labels ``i % K``
shuffled) with MMEngine's ``train_step`` and the same Adam (lr 1e-4,
weight decay 1e-4): preprocessing, forward, backward and the optimiser step
are all measured. Variants:

* ``ce``: MMPretrain's ImageClassifier (GAP + LinearClsHead, cross-entropy),
  the baseline of every ratio;
* ``dmue``: this plugin's DMUEClassifier / DMUEHead (default options: one
  class-sorted copy of the trunk output feeds every branch through views,
  the latent-distribution pass runs without autograd);
* ``released``: the released code's algorithm on the same modules (one copy
  of the trunk rows per branch, the latent-distribution pass run with
  autograd and its graph kept until the step ends).

Time: every model lives in one process; rounds run them in a rotating order
(after warm-up rounds that also create the Adam state), so all see the same
machine load. Each iteration's wall-clock time is recorded, and on CPU the
process CPU time too. A ratio is taken per round against the ``ce`` model
of the same ``K``; the table shows the median over rounds and the min-max.
On CUDA the step is bracketed by ``torch.cuda.synchronize()``.

Peak memory: each model runs in fresh subprocesses (warm-up iterations, the
peak reset, one measured iteration). On CPU the peak resident set
(``VmHWM``, reset through ``/proc/self/clear_refs``) is reported twice: for
the whole process, and above the resident memory right after the imports
(what the model, its optimiser state, the batch and the iteration add).
glibc's adaptive mmap threshold would keep freed blocks in the heap and make
RSS depend on allocation history, so the workers run with
``MALLOC_MMAP_THRESHOLD_=131072``. On CUDA the peak is
``torch.cuda.max_memory_allocated()`` (imports allocate nothing, so both
columns agree). The median over ``--memory-runs`` workers is reported.

FLOPs: per sample, with ``T`` the trunk's (stem, layer1-3) forward+backward
FLOPs, ``L`` the last stage's forward+backward FLOPs and ``Lf`` its forward
FLOPs (counted by ``torch.utils.flop_counter``), an iteration costs
``T + L`` for ``ce`` and ``T + L + Lf + (K-1) L`` for DMUE: the target
branch, the latent-distribution pass (every sample once through the branch
of its class, forward only) and the auxiliary pass (every sample through
the K-1 branches of the other classes, forward and backward). The table
gives the ratio ``(T + K L + Lf) / (T + L)``.

Usage::

    python benchmarks/train_speed.py --repeats 5 \
        --out work_dirs/benchmarks/train_speed.json
"""
import argparse
import json
import logging
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch

VARIANTS = ('ce', 'dmue', 'released')
DEFAULT_VARIANTS = ('ce', 'dmue', 'released')
MALLOC_ENV = {'MALLOC_MMAP_THRESHOLD_': '131072'}
BACKBONE = dict(type='ResNet', depth=18, out_indices=(3, ))
Key = Tuple[str, int]  # (variant, num_classes)


def register_released_head() -> None:
    """Register ``ReleasedStyleDMUEHead`` (benchmark only)."""
    from mmpretrain.registry import MODELS

    from dmue_mm.models.heads import BranchOutputs, DMUEHead

    if 'ReleasedStyleDMUEHead' in MODELS.module_dict:
        return

    @MODELS.register_module()
    class ReleasedStyleDMUEHead(DMUEHead):
        """The released code's per-step work on DMUEHead's modules: a copy
        of the trunk rows per branch call, the latent pass with autograd
        (its graph kept until the step ends)."""

        def forward_branches(self, feats, batch):
            labels, K = batch.labels, self.num_classes
            stage = self.adapter.forward_stage
            aux = []
            for c in range(K):
                rows = (labels != c).nonzero()[:, 0]
                aux.append(self.aux_fcs[c](self._neck(self.dropout(
                    stage(self.branches[c], feats.take(rows))))))
            f = stage(self.adapter.target_stage, feats)
            h = self._neck(self.dropout(f))
            self.retained, targets = [], torch.zeros(labels.numel(), K)
            for c in labels.unique().tolist():
                rows = (labels == c).nonzero()[:, 0]
                s = self.aux_fcs[c](self._neck(
                    stage(self.branches[c], feats.take(rows))))
                self.retained.append(s)
                targets[rows] = self.loss_module.soft_targets(s, c).detach()
            return BranchOutputs(
                target_logits=self.fc(h),
                uncertainty=self._uncertainty(f, batch),
                soft_targets=targets,
                aux_logits=aux,
                neck_feats=h)


def model_cfg(variant: str, num_classes: int) -> dict:
    """The compared models (see the module docstring)."""
    preprocessor = dict(
        type='ClsDataPreprocessor',
        num_classes=num_classes,
        mean=[127.5] * 3,
        std=[127.5] * 3,
        to_rgb=True)
    if variant == 'ce':
        return dict(
            type='ImageClassifier',
            backbone=BACKBONE,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=num_classes,
                in_channels=512,
                loss=dict(type='CrossEntropyLoss')),
            data_preprocessor=preprocessor)
    head = dict(type='DMUEHead', num_classes=num_classes)
    if variant == 'released':
        head['type'] = 'ReleasedStyleDMUEHead'
    return dict(
        type='DMUEClassifier',
        backbone=BACKBONE,
        head=head,
        data_preprocessor=preprocessor)


def build(variant: str,
          num_classes: int,
          device: str,
          fused_adam: bool = False):
    """Model and MMEngine optimiser wrapper of a variant (Adam, lr 1e-4,
    weight decay 1e-4; torch's fused kernel with ``fused_adam``)."""
    import dmue_mm  # noqa: F401  registers the plugin
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    register_released_head()
    model = MODELS.build(model_cfg(variant, num_classes))
    logger = MMLogger.get_current_instance()
    logger.setLevel(logging.WARNING)  # no per-parameter init report
    model.init_weights()
    model.to(device).train()
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(
                type='Adam',
                lr=1e-4,
                weight_decay=1e-4,
                **(dict(fused=True) if fused_adam else {}))))
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


def timed_step(model, wrapper, batch: dict, device: str) -> Dict[str, float]:
    """Seconds of one ``train_step``: wall clock, and CPU time on CPU."""
    cuda = device.startswith('cuda')
    if cuda:
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    model.train_step(batch, wrapper)
    if cuda:
        torch.cuda.synchronize(device)
        return dict(wall=time.perf_counter() - wall)
    return dict(wall=time.perf_counter() - wall,
                cpu=time.process_time() - cpu)


def model_keys(args) -> List[Key]:
    """``(variant, K)`` of every compared model, ``ce`` first per K."""
    return [(v, k) for k in args.num_classes for v in args.variants]


def measure_time(args) -> Dict[Key, Dict[str, List[float]]]:
    """Round-robin over every model, rotating the order every round
    (nothing with ``--repeats 0``)."""
    if args.repeats == 0:
        return {}
    keys = model_keys(args)
    batches = {k: make_batch(args.batch_size, k, args.img_size)
               for k in args.num_classes}
    runs = {key: build(*key, args.device, args.fused_adam) for key in keys}
    times: Dict[Key, Dict[str, List[float]]] = {key: {} for key in keys}
    for step in range(args.warmup + args.repeats):
        shift = step % len(keys)
        for key in keys[shift:] + keys[:shift]:
            seconds = timed_step(*runs[key], batches[key[1]], args.device)
            if step >= args.warmup:
                for kind, value in seconds.items():
                    times[key].setdefault(kind, []).append(value)
        if step >= args.warmup:
            print(f'round {step - args.warmup}: ' + ', '.join(
                f'{v}/K={k} {times[(v, k)]["wall"][-1]:.2f}s'
                for v, k in keys), flush=True)
    return times


def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        return int(re.search(rf'^{field}:\s+(\d+)', f.read(), re.M).group(1))


def reset_peak(device: str) -> None:
    """Start a new peak-memory window."""
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current RSS


def memory_mib(device: str, peak: bool) -> float:
    """Current or peak memory of this process in MiB."""
    if device.startswith('cuda'):
        fn = (torch.cuda.max_memory_allocated
              if peak else torch.cuda.memory_allocated)
        return fn(device) / 2**20
    return _rss_kib('VmHWM' if peak else 'VmRSS') / 1024


def memory_worker(args) -> None:
    """Run one model in this fresh process; print its peak memory."""
    base = memory_mib(args.device, peak=False)
    variant, num_classes = args.memory_worker
    batch = make_batch(args.batch_size, num_classes, args.img_size)
    model, wrapper = build(variant, num_classes, args.device,
                           args.fused_adam)
    for _ in range(args.warmup):
        model.train_step(batch, wrapper)
    reset_peak(args.device)
    model.train_step(batch, wrapper)
    peak = memory_mib(args.device, peak=True)
    print(json.dumps(dict(peak_mib=peak, above_import_mib=peak - base)))


def measure_memory(args) -> Dict[Key, Dict[str, List[float]]]:
    """Peak memory (MiB) of fresh subprocesses, models interleaved."""
    keys = model_keys(args)
    memory: Dict[Key, Dict[str, List[float]]] = {key: {} for key in keys}
    for _ in range(args.memory_runs):
        for variant, num_classes in keys:
            cmd = [
                sys.executable,
                osp.abspath(__file__), '--memory-worker', variant,
                str(num_classes)
            ]
            for key in ('batch_size', 'img_size', 'warmup', 'threads',
                        'device'):
                cmd += [f'--{key.replace("_", "-")}', str(getattr(args, key))]
            if args.fused_adam:
                cmd.append('--fused-adam')
            out = subprocess.run(
                cmd,
                check=True,
                capture_output=True,
                text=True,
                env=dict(os.environ, **MALLOC_ENV))
            result = json.loads(out.stdout.strip().splitlines()[-1])
            for kind, value in result.items():
                memory[(variant, num_classes)].setdefault(kind,
                                                          []).append(value)
            print(f'memory {variant}/K={num_classes}: '
                  f'{result["peak_mib"]:.0f} MiB', flush=True)
    return memory


def pass_flops(img_size: int) -> Dict[str, float]:
    """Per-sample FLOPs of ResNet-18's trunk (forward+backward, ``T``) and
    last stage (forward ``Lf``, forward+backward ``L``)."""
    from mmpretrain.registry import MODELS
    from torch.utils.flop_counter import FlopCounterMode

    import dmue_mm  # noqa: F401
    from dmue_mm.models.utils import ResNetAdapter, StageInput
    backbone = MODELS.build(BACKBONE)
    backbone.eval()  # ResNet.train() returns None
    adapter = ResNetAdapter(backbone)
    x = torch.randn(1, 3, img_size, img_size)
    stage = adapter.target_stage
    rows = adapter.forward_trunk(x).batch.detach().requires_grad_()

    def count(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    return dict(
        T=count(lambda: adapter.forward_trunk(x).batch.sum().backward()),
        Lf=count(lambda: adapter.forward_stage(stage, StageInput((rows, )))),
        L=count(lambda: adapter.forward_stage(stage, StageInput(
            (rows, ))).sum().backward()))


def flop_ratio(flops: Dict[str, float], num_classes: int) -> float:
    """``(T + K L + Lf) / (T + L)`` (see the module docstring)."""
    T, L, Lf = flops['T'], flops['L'], flops['Lf']
    return (T + num_classes * L + Lf) / (T + L)


def summarise(args, times, memory, flops) -> dict:
    """Medians, per-round ratios against ``ce`` and FLOP ratios."""
    from dmue_mm.evaluation.report import spread
    result = dict(
        setup=dict(
            batch_size=args.batch_size,
            img_size=args.img_size,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            fused_adam=args.fused_adam,
            device=args.device,
            memory_runs=args.memory_runs,
            torch=torch.__version__),
        flops_per_sample=flops,
        results={})
    for variant, k in model_keys(args):
        t, base_t = times.get((variant, k), {}), times.get(('ce', k))
        row = dict(
            seconds={kind: spread(v) for kind, v in t.items()},
            time_ratio={
                kind: spread([a / b for a, b in zip(v, base_t[kind])])
                for kind, v in t.items()
            },
            flop_ratio=1.0 if variant == 'ce' else flop_ratio(flops, k))
        if memory:
            mem, base_m = memory[(variant, k)], memory[('ce', k)]
            row['memory_mib'] = {kind: spread(v) for kind, v in mem.items()}
            row['memory_ratio'] = {
                kind: statistics.median(v) / statistics.median(base_m[kind])
                for kind, v in mem.items()
            }
        result['results'][f'{variant}/K={k}'] = row
    return result


def _ratio_cell(spread: Optional[dict]) -> str:
    if spread is None:
        return '-'
    return (f'{spread["median"]:.3f} '
            f'[{spread["min"]:.3f}-{spread["max"]:.3f}]')


def print_table(result: dict) -> None:
    """Markdown table of :func:`summarise`'s result."""
    header = ('model', 'wall s/iter', 'wall ratio [min-max]', 'cpu s/iter',
              'cpu ratio [min-max]', 'FLOP ratio', 'peak MiB (process)',
              'ratio', 'peak MiB (above import)', 'ratio')
    rows = []
    for name, row in result['results'].items():
        cells = [name]
        for kind in ('wall', 'cpu'):
            seconds = row['seconds'].get(kind)
            cells += [
                f'{seconds["median"]:.2f}' if seconds else '-',
                _ratio_cell(row['time_ratio'].get(kind))
            ]
        cells.append(f'{row["flop_ratio"]:.2f}')
        for kind in ('peak_mib', 'above_import_mib'):
            mem = row.get('memory_mib', {}).get(kind)
            cells += [
                f'{mem["median"]:.0f}' if mem else '-',
                f'{row["memory_ratio"][kind]:.3f}' if mem else '-'
            ]
        rows.append(cells)
    from dmue_mm.evaluation.report import format_markdown_table
    print(format_markdown_table(header, rows))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch-size', type=int, default=72)
    parser.add_argument(
        '--num-classes', type=int, nargs='+', default=[7, 8])
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=5,
                        help='measured rounds (0: skip timing)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='unmeasured rounds first (they create the '
                        'Adam state)')
    parser.add_argument(
        '--threads',
        type=int,
        default=len(os.sched_getaffinity(0)),
        help='torch intra-op threads (default: the usable cores)')
    parser.add_argument(
        '--variants',
        nargs='+',
        default=list(DEFAULT_VARIANTS),
        choices=VARIANTS,
        help='models besides the baseline ce (always run)')
    parser.add_argument(
        '--fused-adam',
        action='store_true',
        help='torch\'s fused Adam kernel for every model (default: the '
        'foreach implementation, as the recipe configs)')
    parser.add_argument('--device', default='cpu',
                        help="'cpu' or a CUDA device such as 'cuda'")
    parser.add_argument('--memory-runs', type=int, default=2,
                        help='fresh processes per model (0: skip memory)')
    parser.add_argument(
        '--out', default='work_dirs/benchmarks/train_speed.json')
    parser.add_argument(
        '--memory-worker', nargs=2, metavar=('VARIANT', 'K'),
        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        args.memory_worker = (args.memory_worker[0],
                              int(args.memory_worker[1]))
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available')
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
    result = summarise(args, times, memory, pass_flops(args.img_size))
    print_table(result)
    from dmue_mm.utils.fileio import write_json
    write_json(args.out, result)
    print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
