from .adapters import (BackboneAdapter, ConvNeXtAdapter, MobileNetV2Adapter,
                       ResNetAdapter, StageInput, SwinAdapter, ViTAdapter,
                       adapter_names, build_adapter, register_adapter,
                       stage_key)
from .batch_gather import BatchGather
from .class_layout import ClassLayout
from .loss_pieces import LossPiece, early_backward

__all__ = [
    'BackboneAdapter', 'ConvNeXtAdapter', 'MobileNetV2Adapter',
    'ResNetAdapter', 'StageInput', 'SwinAdapter', 'ViTAdapter',
    'adapter_names', 'build_adapter', 'register_adapter', 'stage_key',
    'BatchGather', 'ClassLayout', 'LossPiece', 'early_backward'
]
