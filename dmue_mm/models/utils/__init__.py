from .adapters import (ADAPTERS, BackboneAdapter, ConvNeXtAdapter,
                       MobileNetV2Adapter, ResNetAdapter, StageInput,
                       SwinAdapter, ViTAdapter, adapter_names, build_adapter,
                       stage_key)

__all__ = [
    'ADAPTERS', 'BackboneAdapter', 'ConvNeXtAdapter', 'MobileNetV2Adapter',
    'ResNetAdapter', 'StageInput', 'SwinAdapter', 'ViTAdapter',
    'adapter_names', 'build_adapter', 'stage_key'
]
