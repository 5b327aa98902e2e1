from .adapters import (ADAPTERS, BackboneAdapter, ConvNeXtAdapter,
                       MobileNetV2Adapter, ResNetAdapter, ResNetCIFARAdapter,
                       StageInput, SwinAdapter, ViTAdapter, adapter_names,
                       build_adapter, stage_key)

__all__ = [
    'ADAPTERS', 'BackboneAdapter', 'ConvNeXtAdapter', 'MobileNetV2Adapter',
    'ResNetAdapter', 'ResNetCIFARAdapter', 'StageInput', 'SwinAdapter',
    'ViTAdapter', 'adapter_names', 'build_adapter', 'stage_key'
]
