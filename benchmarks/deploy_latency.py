"""Deploy-model latency and size vs. MMPretrain's plain ResNet-18.

The paper's promise is "no extra burden for inference": after branch
pruning, a DMUE model is a plain classifier. This script builds, in one
process,

* ``baseline``: MMPretrain's ``ImageClassifier`` (ResNet-18 + GAP +
  ``LinearClsHead``), K = 8;
* ``baseline (copy)``: a second, independent instance of the same model,
  whose ratio to ``baseline`` is the run's noise band (an A/A test);
* ``deploy ResNet-18``: a DMUE model with MMPretrain's ResNet-18 backbone,
  pruned by :class:`~dmue_mm.converters.DeployWriter` and rebuilt from the
  written deploy config (stock types only) and checkpoint;
* ``deploy FaceResNet-18``: the same with the original face stem (no stem
  ReLU, 2x2 max pool);
* ``DMUE before pruning``: the multi-branch model itself (its eval forward
  already runs the target branch only; it carries K extra branch copies,
  classifiers and the uncertainty MLP);

and times ``model(x, mode='tensor')`` under ``torch.no_grad()`` on CPU at
224x224 for batch 1 and 16. Rounds interleave the models so that all see
the same machine load; each round times ``--iters`` forward passes per
model after a warm-up. The table gives the median time per forward pass,
its ratio to ``baseline`` (median over rounds of the per-round ratio, with
the min-max over rounds), and the parameter count.

Usage::

    python benchmarks/deploy_latency.py --rounds 7 \
        --out work_dirs/benchmarks/deploy_latency.json
"""
import argparse
import copy
import statistics
import tempfile
import time
from typing import Callable, Dict, List

import torch
import torch.nn as nn
from mmengine.config import Config
from mmpretrain.registry import MODELS

import dmue_mm  # noqa: F401  registers the plugin
from dmue_mm.converters import DeploySpec, DeployWriter
from dmue_mm.utils.fileio import write_json

NUM_CLASSES = 8
BASELINE = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=NUM_CLASSES,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
BACKBONES = {
    'ResNet-18': dict(type='ResNet', depth=18, out_indices=(3, )),
    'FaceResNet-18': dict(type='FaceResNet', depth=18, out_indices=(3, )),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=224, help='input size')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 16])
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument(
        '--iters',
        type=int,
        default=0,
        help='forward passes per round and model (default: '
        '16 // batch, at least 2)')
    parser.add_argument(
        '--threads',
        type=int,
        default=0,
        help='torch threads (default: all cores)')
    parser.add_argument('--out', help='write the results as JSON')
    return parser.parse_args(argv)


def dmue_model(backbone: dict) -> nn.Module:
    """A DMUE model with non-trivial BN-neck statistics."""
    model = MODELS.build(
        dict(
            type='DMUEClassifier',
            backbone=copy.deepcopy(backbone),
            head=dict(type='DMUEHead', num_classes=NUM_CLASSES)))
    with torch.no_grad():
        model.head.bnneck.running_mean.normal_(std=0.1)
        model.head.bnneck.running_var.uniform_(0.5, 2.0)
    return model.eval()


def deploy_model(backbone: dict, folder: str) -> nn.Module:
    """Prune a DMUE model, then rebuild it from the written deploy files."""
    model = dmue_model(backbone)
    cfg = dict(type='DMUEClassifier', backbone=backbone)
    files = DeployWriter(DeploySpec.from_model(model, cfg)).write(
        model.state_dict(), folder, backbone['type'])
    deploy = MODELS.build(Config.fromfile(files.config).model)
    state = torch.load(
        files.checkpoint, map_location='cpu', weights_only=True)['state_dict']
    deploy.load_state_dict(state, strict=True)
    return deploy.eval()


def build_models(folder: str) -> Dict[str, nn.Module]:
    torch.manual_seed(0)
    models = {
        'baseline': MODELS.build(copy.deepcopy(BASELINE)).eval(),
        'baseline (copy)': MODELS.build(copy.deepcopy(BASELINE)).eval(),
    }
    for name, backbone in BACKBONES.items():
        models[f'deploy {name}'] = deploy_model(backbone, folder)
    models['DMUE before pruning'] = dmue_model(BACKBONES['FaceResNet-18'])
    return models


def timer(model: nn.Module, x: torch.Tensor) -> Callable[[int], float]:
    """Seconds per forward pass over ``n`` passes."""

    def run(n: int) -> float:
        with torch.no_grad():
            start = time.perf_counter()
            for _ in range(n):
                model(x, mode='tensor')
            return (time.perf_counter() - start) / n

    return run


def measure(models: Dict[str, nn.Module], batch: int, size: int, rounds: int,
            iters: int) -> Dict[str, List[float]]:
    """Per-round seconds per forward pass of every model, interleaved."""
    x = torch.randn(batch, 3, size, size)
    runs = {name: timer(model, x) for name, model in models.items()}
    for run in runs.values():
        run(1)  # warm-up
    times: Dict[str, List[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(run(iters))
    return times


def summarise(times: Dict[str, List[float]], params: Dict[str,
                                                          int]) -> List[dict]:
    base = times['baseline']
    rows = []
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, base)]
        rows.append(
            dict(
                model=name,
                ms=statistics.median(values) * 1e3,
                ratio=statistics.median(ratios),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
                params=params[name]))
    return rows


def format_rows(batch: int, rows: List[dict]) -> str:
    lines = [
        f'batch {batch}', f'{"model":<22} {"ms/forward":>10} {"ratio":>6} '
        f'{"(min-max)":>13} {"params":>12}'
    ]
    for r in rows:
        lines.append(f'{r["model"]:<22} {r["ms"]:>10.2f} {r["ratio"]:>6.2f} '
                     f'{r["ratio_min"]:>6.2f}-{r["ratio_max"]:<6.2f} '
                     f'{r["params"]:>12,}')
    return '\n'.join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        models = build_models(folder)
    params = {
        name: sum(p.numel() for p in model.parameters())
        for name, model in models.items()
    }
    results = dict(
        size=args.size,
        rounds=args.rounds,
        threads=torch.get_num_threads(),
        num_classes=NUM_CLASSES,
        batches={})
    for batch in args.batches:
        iters = args.iters or max(2, 16 // batch)
        rows = summarise(
            measure(models, batch, args.size, args.rounds, iters), params)
        results['batches'][str(batch)] = dict(iters=iters, rows=rows)
        print(format_rows(batch, rows), end='\n\n')
    if args.out:
        write_json(args.out, results)
        print(f'results -> {args.out}')
    return results


if __name__ == '__main__':
    main()
