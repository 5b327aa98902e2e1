"""Backpropagate the independent parts of a loss during the forward pass.

DMUE's auxiliary branches are independent given the trunk output: branch
``c`` reads its rows of the trunk output (and the target Gram matrix) and
yields two loss sums. Backpropagated the usual way, all ``K`` branches keep
their activations until ``loss.backward()``: at ResNet-18, K = 8, batch 72,
224x224 that is ~460 MB held together with the trunk's own activations.
:func:`early_backward` instead runs each part forward *and* backward at once
(with the weights the caller's loss gives its terms), so only one part's
activations are alive at a time; what it keeps until the real backward is
the gradients (of the part's parameters and of its input rows, which
must exist at the optimiser step anyway).

The real backward then replays these gradients, scaled by the incoming
gradient. That is exact (same operations, up to float summation order) for
any loss that is a multiple ``s * sum_j w_j * value_j`` of the declared
weighting, e.g. MMEngine's sum of the ``loss_*`` terms, loss scaling (AMP)
or the division of gradient accumulation. Any other use (backpropagating a
single term, a second backward of the same graph) raises an error instead of
giving a wrong gradient.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ['LossPiece', 'early_backward']

Span = Optional[Tuple[int, int]]


@dataclass
class LossPiece:
    """One independent part of a loss.

    Args:
        fn (Callable): Called with one tensor per input of
            :func:`early_backward` (the rows ``spans`` of it); returns the
            part's term values, a 1-D tensor.
        spans (Sequence[Optional[Tuple[int, int]]]): Per input, the rows
            ``(start, length)`` it reads (along dim 0), or None for all.
        params (Sequence[nn.Parameter]): The parameters ``fn`` uses.
    """
    fn: Callable[..., torch.Tensor]
    spans: Sequence[Span]
    params: Sequence[nn.Parameter]

    def inputs(self, tensors: Sequence[torch.Tensor],
               leaves: bool = False) -> List[torch.Tensor]:
        """The rows of ``tensors`` this piece reads; as fresh autograd
        leaves (same storage) with ``leaves=True``."""
        views = [
            t if span is None else t.narrow(0, *span)
            for t, span in zip(tensors, self.spans)
        ]
        if leaves:
            views = [v.detach().requires_grad_(v.requires_grad) for v in views]
        return views


def early_backward(pieces: Sequence[LossPiece], weights: torch.Tensor,
                   inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Term values of ``pieces``, their gradient computed piece by piece.

    Args:
        pieces (Sequence[LossPiece]): The independent parts.
        weights (Tensor): The weight of every term value (1-D, the pieces'
            values concatenated) in the loss that will be backpropagated.
        inputs (Sequence[Tensor]): Tensors the pieces read rows of; their
            gradient flows on to the rest of the graph.

    Returns:
        Tensor: The concatenated term values. Without grad mode (or with
        nothing to differentiate) they are computed plainly.
    """
    params = _unique(p for piece in pieces for p in piece.params
                     if p.requires_grad)
    if not torch.is_grad_enabled() or not (
            params or any(t.requires_grad for t in inputs)):
        return torch.cat([piece.fn(*piece.inputs(inputs))
                          for piece in pieces])
    return _EarlyBackward.apply(weights.detach(), pieces, len(inputs),
                                *inputs, *params)


def _unique(params) -> List[nn.Parameter]:
    seen: Dict[int, nn.Parameter] = {}
    for p in params:
        seen.setdefault(id(p), p)
    return list(seen.values())


class _EarlyBackward(torch.autograd.Function):
    """Forward: values and weighted gradients, piece by piece. Backward:
    the stored gradients times the common scale of the incoming one."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, pieces: Sequence[LossPiece],
                num_inputs: int, *tensors: torch.Tensor) -> torch.Tensor:
        inputs, params = tensors[:num_inputs], tensors[num_inputs:]
        input_grads: List[Optional[torch.Tensor]] = [None] * num_inputs
        param_grads: Dict[int, torch.Tensor] = {}
        values, offset = [], 0
        for piece in pieces:
            with torch.enable_grad():
                leaves = piece.inputs(inputs, leaves=True)
                out = piece.fn(*leaves)
                weight = weights[offset:offset + out.numel()]
                offset += out.numel()
                own = _unique(p for p in piece.params if p.requires_grad)
                wanted = [v for v in leaves if v.requires_grad] + own
                grads = (
                    torch.autograd.grad((out * weight).sum(), wanted,
                                        allow_unused=True)
                    if out.requires_grad and wanted else [None] * len(wanted))
            values.append(out.detach())
            grads = iter(grads)
            for i, leaf in enumerate(leaves):
                if leaf.requires_grad:
                    _add_rows(input_grads, i, inputs[i], piece.spans[i],
                              next(grads))
            for p in own:
                _add(param_grads, id(p), next(grads))
            del out, leaves
        ctx.weights = weights
        ctx.grads = input_grads + [param_grads.get(id(p)) for p in params]
        ctx.shapes = [(t.shape, t.dtype, t.device) for t in tensors]
        return torch.cat(values)

    @staticmethod
    def backward(ctx, grad_values: torch.Tensor):
        if ctx.grads is None:
            raise RuntimeError(
                'the DMUE auxiliary-branch gradients were already used: '
                'this graph can be backpropagated only once')
        scale = _common_scale(grad_values, ctx.weights)
        grads, ctx.grads = ctx.grads, None
        out = []
        for grad, needed, (shape, dtype, device) in zip(
                grads, ctx.needs_input_grad[3:], ctx.shapes):
            if grad is None and needed:  # every parameter gets one (DDP)
                grad = torch.zeros(shape, dtype=dtype, device=device)
            elif grad is not None and scale != 1.0:
                grad.mul_(scale)
            out.append(grad)
        return (None, None, None, *out)


def _add(store: Dict[int, torch.Tensor], key: int,
         grad: Optional[torch.Tensor]) -> None:
    if grad is None:
        return
    if key in store:
        store[key].add_(grad)
    else:
        store[key] = grad


def _add_rows(store: List[Optional[torch.Tensor]], index: int,
              tensor: torch.Tensor, span: Span,
              grad: Optional[torch.Tensor]) -> None:
    if grad is None:
        return
    if store[index] is None:
        store[index] = torch.zeros_like(tensor)
    rows = store[index] if span is None else store[index].narrow(0, *span)
    rows.add_(grad)


def _common_scale(grad: torch.Tensor, weights: torch.Tensor) -> float:
    """``s`` with ``grad == s * weights``; raises if there is none."""
    grad, weights = grad.double(), weights.double()
    norm = float(weights.dot(weights))
    scale = float(grad.dot(weights)) / norm if norm > 0 else 0.0
    error = float((grad - scale * weights).abs().max())
    if error > 1e-3 * float((scale * weights).abs().max()):
        raise RuntimeError(
            'the DMUE head backpropagates its auxiliary branches during the '
            'forward pass and can only differentiate a multiple of the sum '
            'of its loss_* terms (what MMEngine optimises); to '
            'differentiate another combination, set '
            'model.head.early_backward=False')
    return scale
