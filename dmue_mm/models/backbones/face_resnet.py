"""ResNet with the stem of the original DMUE face models.

The MS-Celeb-1M pretraining backbone and the DMUE ResNet-18 of the released
code have an unusual stem: conv 7x7/2 → BN → *no ReLU* (it is commented out
in the original, "missed relu") → MaxPool 2x2/2 without padding. The output
size equals torchvision's (56x56 at 224), the numbers do not. Pretrained
face weights expect this stem, so it is reproduced exactly here; everything
else (blocks, stage names, freezing, ``norm_eval``, init) is MMPretrain's
:class:`~mmpretrain.models.backbones.ResNet`.
"""
import torch.nn as nn
from mmpretrain.models.backbones import ResNet
from mmpretrain.registry import MODELS

from .arg_checks import check_resnet_variant_args

__all__ = ['FaceResNet']


@MODELS.register_module()
class FaceResNet(ResNet):
    """ResNet-18/34 with the original DMUE face stem.

    State-dict names are MMPretrain's (``conv1``, ``bn1``,
    ``layer1..layer4``, blocks ``conv1/bn1/conv2/bn2``, ``downsample.0/1``);
    they equal the original keys after removing ``base.`` (DMUE) or
    ``feat_net.`` (MS-Celeb pretraining), so a converted checkpoint loads
    strictly.

    Args:
        depth (int): 18 or 34 (BasicBlock depths of MMPretrain's arch table).
            Defaults to 18.
        stem_relu (bool): Add the ReLU after the stem BN that the original
            omits. Only for new models trained from scratch: original weights
            expect ``False``. Defaults to False.
        **kwargs: Every other argument of MMPretrain's ``ResNet`` (e.g.
            ``out_indices``, ``frozen_stages``, ``norm_eval``, ``strides``,
            ``init_cfg``), except ``deep_stem``.

    Example:
        >>> import torch
        >>> import dmue_mm  # registers the backbone
        >>> from mmpretrain.registry import MODELS
        >>> net = MODELS.build(dict(type='FaceResNet', depth=18))
        >>> [tuple(o.shape) for o in net(torch.rand(1, 3, 224, 224))]
        [(1, 512, 7, 7)]
    """

    arch_settings = {
        depth: ResNet.arch_settings[depth]
        for depth in (18, 34)
    }

    def __init__(self, depth: int = 18, stem_relu: bool = False, **kwargs):
        # deep_stem would replace the face stem this backbone exists for
        check_resnet_variant_args(
            'FaceResNet', depth, self.arch_settings, kwargs, ('deep_stem', ),
            " (for Bottleneck depths use type='ResNet' or 'ResNetIBN')")
        self.stem_relu = stem_relu
        super().__init__(depth=depth, **kwargs)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        """Build conv1/bn1 as MMPretrain does, then the face-stem quirks."""
        super()._make_stem_layer(in_channels, stem_channels)
        if not self.stem_relu:
            # ResNet.forward applies ``self.relu`` after ``bn1``; the original
            # face stem has no activation there.
            self.relu = nn.Identity()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2, padding=0)
