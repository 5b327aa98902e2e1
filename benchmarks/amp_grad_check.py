"""One DMUE training step in float16 AMP against float32: gradient errors.

The step of MMEngine's ``AmpOptimWrapper`` on a GPU: float16 autocast for the
forward pass, the loss multiplied by a loss scale before ``backward()``, the
gradients divided by it. The scale starts at GradScaler's initial 65536 and
is halved while a gradient overflows, as GradScaler does over skipped steps
(the scale used is reported). The same weights, batch and dropout masks (the
same seed) are run once in float32. Printed as a table and written as
JSON: per part of the model (trunk, target stage, auxiliary branches, head
layers), the relative error of the gradient (norm of the difference over the
float32 norm), in units of float16's epsilon (2^-10).

Usage::

    python benchmarks/amp_grad_check.py --device cuda --out amp.json
    python benchmarks/amp_grad_check.py --device cpu --batch-size 8 \\
        --img-size 32 --num-classes 3        # quick CPU run (tests)
"""
import argparse
import copy
import os.path as osp
import sys
from typing import Dict

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from train_speed import build, make_batch  # noqa: E402

EPS16 = torch.finfo(torch.float16).eps


def part_of(name: str) -> str:
    """The model part a parameter belongs to."""
    if name.startswith('head.branches.'):
        return 'branches'
    if name.startswith('head.'):
        return 'head_layers'
    if '.layer4.' in name or name.startswith('backbone.layer4'):
        return 'target_stage'
    return 'trunk'


def step_grads(model, batch: dict, amp: bool, scale: float,
               device: str) -> Dict[str, torch.Tensor]:
    """Gradients of one step (unscaled), concatenated per part; the same
    dropout masks in every call."""
    model = copy.deepcopy(model)
    torch.manual_seed(1)
    data = model.data_preprocessor(batch, True)
    with torch.autocast(device.split(':')[0], dtype=torch.float16,
                        enabled=amp):
        losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    (total * scale).backward()
    parts: Dict[str, list] = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            parts.setdefault(part_of(name), []).append(p.grad.float().flatten()
                                                       / scale)
    return {k: torch.cat(v) for k, v in parts.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--batch-size', type=int, default=72)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--num-classes', type=int, default=8)
    parser.add_argument('--loss-scale', type=float, default=65536.0)
    parser.add_argument('--out', help='JSON file to write')
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, _ = build('dmue', args.num_classes, args.device)
    batch = make_batch(args.batch_size, args.num_classes, args.img_size)
    g32 = step_grads(model, batch, False, 1.0, args.device)
    scale = args.loss_scale
    while True:
        g16 = step_grads(model, batch, True, scale, args.device)
        if all(torch.isfinite(g).all() for g in g16.values()) or scale <= 1:
            break
        scale /= 2  # GradScaler: skip the step, halve the scale
    rows = {}
    for part, ref in g32.items():
        err = float((g16[part] - ref).norm() / ref.norm().clamp(min=1e-30))
        rows[part] = dict(
            rel_error=err,
            rel_error_eps16=err / EPS16,
            finite=bool(torch.isfinite(g16[part]).all()),
            numel=ref.numel())
    result = dict(
        setup=vars(args) | dict(torch=torch.__version__),
        loss_scale_used=scale,
        parts=rows)
    print(f'loss scale {scale:g} (started at {args.loss_scale:g})')
    print('| part | parameters | relative gradient error | in eps16 | '
          'finite |')
    print('|---|---|---|---|---|')
    for part, row in rows.items():
        print(f'| {part} | {row["numel"]} | {row["rel_error"]:.2e} | '
              f'{row["rel_error_eps16"]:.1f} | {row["finite"]} |')
    if args.out:
        from dmue_mm.utils.fileio import write_json
        write_json(args.out, result)
    return result


if __name__ == '__main__':
    main()
