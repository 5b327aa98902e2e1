"""The fixed training step whose outputs ``tests/data/head_step_reference.pt``
holds.

The file was written by :func:`reference_outputs` with the head as it was
before the head's training path was rewritten (commit f9a411e: the
``early_backward`` autograd.Function, target -> latent -> auxiliary BN call
order). Its losses and gradients do not depend on that order (in train mode
batch-norm normalises with the batch's own statistics); the rewritten head
must give the same values.

Rebuilding the case (model, inputs) only needs torch's CPU generator, which
gives the same numbers on every machine.
"""
from typing import Dict, List, Tuple

import torch
from dmue_testing import samples, tiny_dmue
from mmengine.logging import MessageHub

K = 4
#: every class at least twice; class 3 absent; one class only (branch 1
#: has no row). No singleton class: a single-sample branch call uses the
#: running statistics, which the BN call order sets, so it differs by design
CASES: Dict[str, List[int]] = {
    'all_classes': [0, 1, 2, 3, 2, 0, 1, 3, 3, 0, 2, 1],
    'absent_class': [0, 0, 1, 1, 2, 2, 2],
    'one_class': [1, 1, 1, 1],
}
BACKBONE = dict(type='ResNet', depth=18, base_channels=4, stem_channels=4,
                out_indices=(3, ))


def build_case(name: str) -> Tuple[torch.nn.Module, torch.Tensor, list]:
    """The model (train mode, dropout off) and the batch of case ``name``."""
    torch.manual_seed(0)
    model = tiny_dmue(K, backbone=BACKBONE, dropout=0.0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial classifier, MLP and branch weights
        for pname, p in model.head.named_parameters():
            scale = 0.05 if pname.startswith('branches') else 0.3
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    labels = CASES[name]
    x = torch.randn(len(labels), 3, 32, 32, generator=gen)
    return model.train(), x, samples(labels)


#: epoch = ramp_a: both ramp weights are 1, so every term weighs in
EPOCH = 6


def reference_outputs() -> dict:
    """Loss values and gradients of every case at :data:`EPOCH` (what the
    file stores)."""
    MessageHub.get_current_instance().update_info('epoch', EPOCH)
    out = {}
    for name in CASES:
        model, x, data = build_case(name)
        losses = model.loss(x, data)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        out[name] = dict(
            losses={k: v.detach().clone() for k, v in losses.items()},
            grads={n: p.grad.clone() for n, p in model.named_parameters()
                   if p.grad is not None})
    return out
