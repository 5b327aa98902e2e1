"""ResNet-IBN-a (Pan et al., ECCV 2018) as used by DMUE.

Instance-Batch Normalisation: in every Bottleneck of the first three stages
the first norm layer normalises half of the channels with InstanceNorm and
the rest with BatchNorm. The last stage keeps plain BN. The stem is the
standard ResNet stem. Names follow the original (``bn1.IN.*``, ``bn1.BN.*``)
so that DMUE / IBN-Net checkpoints load after removing their prefix.
"""
from typing import Sequence

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmpretrain.models.backbones import ResNet
from mmpretrain.models.backbones.resnet import Bottleneck, ResLayer
from mmpretrain.registry import MODELS

from .arg_checks import check_resnet_variant_args

__all__ = ['IBN', 'IBNBottleneck', 'ResNetIBN']


class IBN(nn.Module):
    """Instance-Batch Normalisation over the channel dimension.

    The first ``int(channels * ratio)`` channels go through
    ``InstanceNorm2d(affine=True)`` (no running statistics), the others
    through the configured BatchNorm; the results are concatenated, IN part
    first.

    Args:
        channels (int): Number of input channels.
        ratio (float): Fraction of channels normalised by IN.
            Defaults to 0.5.
        norm_cfg (dict): Config of the BN part. Defaults to
            ``dict(type='BN')``.
    """

    def __init__(self,
                 channels: int,
                 ratio: float = 0.5,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        if not 0 < ratio < 1:
            raise ValueError(f'IBN: ratio must be in (0, 1), got {ratio}')
        self.half = int(channels * ratio)
        if not 0 < self.half < channels:
            raise ValueError(f'IBN: channels={channels} with ratio={ratio} '
                             'leaves one of the two parts empty')
        # Upper-case names are the original state-dict keys.
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = build_norm_layer(norm_cfg, channels - self.half)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W): IN on the first part, BN on the
        rest."""
        in_part, bn_part = torch.split(
            x, [self.half, x.size(1) - self.half], dim=1)
        return torch.cat(
            (self.IN(in_part.contiguous()), self.BN(bn_part.contiguous())),
            dim=1)


class IBNBottleneck(Bottleneck):
    """MMPretrain's Bottleneck whose first norm layer may be :class:`IBN`.

    Args:
        ibn (bool): Replace the norm after ``conv1`` by an IBN module over the
            block's mid channels. Defaults to False.
        **kwargs: Arguments of MMPretrain's ``Bottleneck``.
    """

    def __init__(self, *args, ibn: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.ibn = ibn
        if ibn:
            # Replaces the module registered under ``norm1_name`` ('bn1').
            self.add_module(self.norm1_name,
                            IBN(self.mid_channels, norm_cfg=self.norm_cfg))


@MODELS.register_module()
class ResNetIBN(ResNet):
    """ResNet-IBN-a backbone (ResNet-50/101/152 with IBN in stages 1-3).

    Everything but the IBN blocks is MMPretrain's ``ResNet``: the standard
    stem, stage names ``layer1..layer4``, ``out_indices``, ``frozen_stages``
    (also freezes the IN affine parameters), ``norm_eval`` (puts every BN,
    including the BN part of IBN, in eval mode; InstanceNorm has no running
    statistics, so it behaves the same in both modes) and ``init_cfg``.

    Args:
        depth (int): 50, 101 or 152. Defaults to 50.
        ibn_stages (Sequence[bool]): For each of the four stages, whether its
            blocks use IBN. Defaults to ``(True, True, True, False)``
            (IBN-a).
        **kwargs: Every other argument of MMPretrain's ``ResNet``, except
            ``deep_stem`` and ``expansion``.

    Example:
        >>> import torch
        >>> import dmue_mm  # registers the backbone
        >>> from mmpretrain.registry import MODELS
        >>> net = MODELS.build(dict(type='ResNetIBN', depth=50))
        >>> [tuple(o.shape) for o in net(torch.rand(1, 3, 224, 224))]
        [(1, 2048, 7, 7)]
    """

    arch_settings = {
        depth: (IBNBottleneck, ResNet.arch_settings[depth][1])
        for depth in (50, 101, 152)
    }

    def __init__(self,
                 depth: int = 50,
                 ibn_stages: Sequence[bool] = (True, True, True, False),
                 **kwargs):
        check_resnet_variant_args('ResNetIBN', depth, self.arch_settings,
                                  kwargs, ('deep_stem', 'expansion'))
        if len(ibn_stages) != 4:
            raise ValueError('ResNetIBN: ibn_stages needs one flag per stage '
                             f'(4), got {tuple(ibn_stages)}')
        self.ibn_stages = tuple(bool(flag) for flag in ibn_stages)
        super().__init__(depth=depth, **kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        """Build the next stage; ``ResNet.__init__`` appends each stage's name
        to ``res_layers`` after building it, so its length is the index."""
        stage = len(self.res_layers)
        return ResLayer(ibn=self.ibn_stages[stage], **kwargs)
