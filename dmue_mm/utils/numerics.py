"""Rounding tolerances of float32 results, derived from the arithmetic.

Two evaluations of the same network (PyTorch and onnxruntime, AVX-512 and
AVX2 kernels, a batch and single images) sum their products in other
orders, so their float32 results differ by rounding. The tolerance for
comparing them follows from the size of the sums, not from what one
machine happened to give.
"""
import math
from typing import Tuple

import numpy as np
import torch.nn as nn

__all__ = ['FLOAT32_EPS', 'float32_sum_tolerance', 'network_size']

#: float32 machine epsilon, 2**-23 (the unit roundoff is half of it).
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def float32_sum_tolerance(scale: float,
                          terms: int,
                          layers: int = 1,
                          conditioning: float = 4.0) -> float:
    """Absolute tolerance between two float32 evaluations whose sums run in
    another order.

    A float32 sum of ``terms`` products has rounding errors of random sign:
    their spread grows like ``sqrt(terms) * eps`` times ``sum_i |x_i y_i|``
    (the worst case, ``terms * eps``, is not reached); ``conditioning``
    bounds ``sum_i |x_i y_i| / |sum_i x_i y_i|``. The errors of ``layers``
    layers add up (each passes the relative error of its input on, about
    unchanged).

    Args:
        scale (float): The largest ``|output|``; at least 1 is used (small
            outputs carry the absolute error of the large ones they are
            computed with).
        terms (int): The largest number of products one sum has (fan-in).
        layers (int): The layers whose arithmetic differs.
        conditioning (float): Bound of the ratio above.

    Returns:
        float: The tolerance.
    """
    return (layers * math.sqrt(terms) * conditioning * FLOAT32_EPS *
            max(float(scale), 1.0))


def network_size(model: nn.Module) -> Tuple[int, int]:
    """The number of convolution and linear layers of ``model`` and the
    largest fan-in (products per output) among them.

    Returns:
        tuple[int, int]: (layers, fan-in).
    """
    layers, fan_in = 0, 1
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            layers += 1
            fan_in = max(fan_in, module.weight[0].numel())
    return layers, fan_in
