"""Branch pruning: a trained DMUE model -> the state dict of a stock
MMPretrain ``ImageClassifier`` (backbone + neck + ``LinearClsHead``).

The backbone's own last stage is the target branch, so every ``backbone.*``
tensor is kept as it is. The auxiliary branches, their classifiers and the
uncertainty MLP are dropped. The BN-neck (eval mode: running statistics) is
folded into the bias-free target classifier::

    s  = gamma / sqrt(running_var + eps)
    W' = W · diag(s)
    b  = W · (beta - running_mean · s)

so that ``W' x + b == W · BN(x)`` for every ``x``.
"""
import re
from collections import OrderedDict
from typing import Mapping, Optional, Tuple

import torch

from .errors import ConversionError

__all__ = ['fold_bnneck', 'prune_state_dict', 'prune_model', 'bnneck_eps']

# head parts that exist only for training
_TRAINING_ONLY = re.compile(r'^head\.(branches|aux_fcs|uncertainty_mlp)\.')
_BN_PARAMS = ('weight', 'bias', 'running_mean', 'running_var')


def fold_bnneck(
        weight: torch.Tensor,
        running_mean: torch.Tensor,
        running_var: torch.Tensor,
        eps: float,
        gamma: Optional[torch.Tensor] = None,
        beta: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode ``BatchNorm1d`` into the following bias-free linear
    layer (computed in float64).

    Args:
        weight (Tensor): Classifier weight ``W`` (K, D).
        running_mean (Tensor): BN running mean (D,).
        running_var (Tensor): BN running variance (D,).
        eps (float): BN epsilon.
        gamma (Tensor, optional): BN weight (D,); None: ones (no affine).
        beta (Tensor, optional): BN bias (D,); None: zeros.

    Returns:
        tuple: ``W'`` (K, D) and ``b`` (K,), in ``weight``'s dtype.
    """
    w = weight.detach().double()
    scale = (running_var.detach().double() + eps).rsqrt()
    if gamma is not None:
        scale = scale * gamma.detach().double()
    shift = -running_mean.detach().double() * scale
    if beta is not None:
        shift = shift + beta.detach().double()
    return ((w * scale).to(weight.dtype).contiguous(),
            (w @ shift).to(weight.dtype).contiguous())


def prune_state_dict(state: Mapping[str, torch.Tensor],
                     eps: float = 1e-5) -> 'OrderedDict[str, torch.Tensor]':
    """The deploy state dict of a DMUE state dict.

    Args:
        state (Mapping): ``DMUEClassifier`` state dict (``backbone.*``,
            ``head.fc.weight``, optional ``head.bnneck.*``, and the training
            parts, which are dropped).
        eps (float): The BN-neck epsilon. Defaults to 1e-5 (PyTorch's and
            the original's).

    Returns:
        OrderedDict: ``backbone.*`` and ``head.fc.{weight,bias}`` of a stock
        ``ImageClassifier`` with a ``LinearClsHead``; CPU tensors.

    Raises:
        ConversionError: On a missing classifier or an unknown key.
    """
    if 'head.fc.weight' not in state:
        raise ConversionError(
            'not a DMUE state dict: no head.fc.weight (the target '
            'classifier); found keys such as '
            f'{sorted(state)[:3]}')
    out = OrderedDict()
    for key, value in state.items():
        if key.startswith('backbone.'):
            out[key] = value.detach().cpu().clone()
        elif not (_TRAINING_ONLY.match(key) or key == 'head.fc.weight'
                  or key.startswith('head.bnneck.')):
            raise ConversionError(
                f'unexpected key {key!r} in a DMUE state dict: the deploy '
                'model has only backbone.* and the target classifier')
    weight = state['head.fc.weight'].detach().cpu()
    if 'head.bnneck.running_mean' in state:
        neck = {name: state.get(f'head.bnneck.{name}') for name in _BN_PARAMS}
        neck = {
            k: v.detach().cpu() if v is not None else None
            for k, v in neck.items()
        }
        weight, bias = fold_bnneck(weight, neck['running_mean'],
                                   neck['running_var'], eps, neck['weight'],
                                   neck['bias'])
    else:
        weight, bias = weight.clone(), weight.new_zeros(weight.size(0))
    out['head.fc.weight'] = weight
    out['head.fc.bias'] = bias
    return out


def bnneck_eps(model: torch.nn.Module) -> float:
    """The BN-neck epsilon of a DMUE model (1e-5 without a neck)."""
    neck = getattr(model.head, 'bnneck', None)
    return float(neck.eps) if neck is not None else 1e-5


def prune_model(model: torch.nn.Module) -> 'OrderedDict[str, torch.Tensor]':
    """:func:`prune_state_dict` of a built ``DMUEClassifier``.

    Args:
        model (nn.Module): The DMUE model (unwrapped from DDP).

    Returns:
        OrderedDict: The deploy state dict.
    """
    return prune_state_dict(model.state_dict(), bnneck_eps(model))
