"""The derived float32 tolerances (used by convert.py onnx's check)."""
import math

import pytest
import torch.nn as nn

from dmue_mm.utils.numerics import (FLOAT32_EPS, float32_sum_tolerance,
                                    network_size)


def test_network_size_counts_conv_and_linear_layers():
    from mmpretrain.registry import MODELS
    resnet = MODELS.build(dict(type='ResNet', depth=18, out_indices=(3, )))
    # 17 convs on the main path + 3 downsample convs; layer4: 512 x 3 x 3
    assert network_size(resnet) == (20, 512 * 9)
    head = nn.Sequential(nn.Conv2d(8, 4, 3, groups=2), nn.Linear(300, 2))
    assert network_size(head) == (2, 300)  # grouped conv: 4 x 3 x 3 = 36


def test_tolerance_formula():
    assert FLOAT32_EPS == 2**-23
    assert float32_sum_tolerance(10.0, 4608, layers=21) == pytest.approx(
        21 * math.sqrt(4608) * 4 * 2**-23 * 10)
    # outputs below 1 keep the absolute error of unit-size values
    assert float32_sum_tolerance(0.01, 16) == float32_sum_tolerance(1.0, 16)
