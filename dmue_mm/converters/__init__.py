"""Checkpoint conversion and deployment: branch pruning to a stock
MMPretrain classifier, the original DMUE checkpoint formats, ONNX export.

See ``docs/deploy.md`` and ``tools/convert.py``.
"""
from .checkpoint_io import (check_state_dict, load_foreign, save_checkpoint,
                            shape_str, strip_prefix, to_plain)
from .commands import (ConversionResult, convert_msceleb, convert_plugin,
                       convert_snapshot, convert_target, original_classes)
from .deploy import (DEFAULT_TEST_ROOT, ORIGINAL_DATA_PREPROCESSOR,
                     ORIGINAL_TEST_PIPELINE, TEST_DATA_MODES, DeployFiles,
                     DeploySpec, DeployWriter, build_deploy_config,
                     build_dmue_model, load_dmue_state, resolve_classes)
from .errors import ArchitectureMismatchError, ConversionError
from .onnx_export import (OnnxReport, build_deploy_model, export_onnx,
                          input_size, verify_onnx)
from .original import (ARCH_CHOICES, ORIGINAL_BACKBONES, OriginalWeights,
                       detect_arch, original_model_cfg, parse_msceleb,
                       parse_snapshot, parse_target, plugin_checkpoint)
from .pruning import bnneck_eps, fold_bnneck, prune_model, prune_state_dict

__all__ = [
    'check_state_dict', 'load_foreign', 'save_checkpoint',
    'shape_str', 'strip_prefix', 'to_plain', 'ConversionResult',
    'convert_msceleb', 'convert_plugin', 'convert_snapshot', 'convert_target',
    'original_classes', 'DEFAULT_TEST_ROOT', 'ORIGINAL_DATA_PREPROCESSOR',
    'ORIGINAL_TEST_PIPELINE', 'TEST_DATA_MODES', 'DeployFiles', 'DeploySpec',
    'DeployWriter', 'build_deploy_config', 'build_dmue_model',
    'load_dmue_state', 'resolve_classes', 'ArchitectureMismatchError',
    'ConversionError', 'OnnxReport', 'build_deploy_model', 'export_onnx',
    'input_size', 'verify_onnx', 'ARCH_CHOICES', 'ORIGINAL_BACKBONES',
    'OriginalWeights', 'detect_arch', 'original_model_cfg', 'parse_msceleb',
    'parse_snapshot', 'parse_target', 'plugin_checkpoint', 'bnneck_eps',
    'fold_bnneck', 'prune_model', 'prune_state_dict'
]
