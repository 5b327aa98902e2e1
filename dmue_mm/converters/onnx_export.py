"""ONNX export of a deploy model, checked against onnxruntime.

The graph takes a normalised NCHW float32 batch (``(RGB - mean) / std`` at
the test crop size; the batch dimension is dynamic) and returns ``logits``
and ``scores`` (softmax). The preprocessing, the class names and the input
size are stored in the model's ``metadata_props``.
"""
import copy
import json
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS

from dmue_mm.utils.numerics import (FLOAT32_EPS, float32_sum_tolerance,
                                    network_size)
from .errors import ConversionError

__all__ = [
    'OnnxReport', 'build_deploy_model', 'input_size', 'export_onnx',
    'verify_onnx'
]


@dataclass
class OnnxReport:
    """Result of an export.

    Attributes:
        path (str): The ONNX file.
        input_size (tuple): (H, W).
        max_abs_diff (float, optional): Largest |logit difference| between
            onnxruntime and PyTorch (None: not verified).
        verify_batch (int): Batch size of the check.
    """
    path: str
    input_size: Tuple[int, int]
    max_abs_diff: Optional[float] = None
    verify_batch: int = 0


class _LogitsAndScores(nn.Module):

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        logits = self.model(inputs, mode='tensor')
        return logits, torch.softmax(logits, dim=1)


def build_deploy_model(config: str,
                       checkpoint: str) -> Tuple[nn.Module, Config]:
    """Build a deploy model from its config and load the checkpoint strictly.

    Args:
        config (str): Deploy config (its ``custom_imports`` are applied).
        checkpoint (str): Deploy checkpoint.

    Returns:
        tuple: The model in eval mode and the config.
    """
    cfg = Config.fromfile(config)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    load_checkpoint(
        model, checkpoint, map_location='cpu', strict=True, logger='silent')
    return model.eval(), cfg


def input_size(cfg: Config, default: int = 224) -> Tuple[int, int]:
    """(H, W) the test pipeline produces: its last ``CenterCrop`` /
    ``RandomCrop`` size, else its last fixed ``Resize`` scale, else
    ``default``."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset',
                                                  {}).get('pipeline', [])
    for transform in reversed(pipeline):
        kind = str(transform.get('type', ''))
        size = transform.get('crop_size') if 'Crop' in kind else (
            transform.get('scale') if kind.endswith('Resize') else None)
        if size is None:
            continue
        if isinstance(size, int):
            return size, size
        width, height = size  # MMCV scales are (w, h)
        return int(height), int(width)
    return default, default


def _metadata(cfg: Config, checkpoint_meta: dict, size: Tuple[int,
                                                              int]) -> dict:
    pre = cfg.get('data_preprocessor') or {}
    return dict(
        classes=json.dumps(checkpoint_meta.get('classes')),
        mean=json.dumps(list(pre.get('mean', [0, 0, 0]))),
        std=json.dumps(list(pre.get('std', [1, 1, 1]))),
        channel_order='RGB' if pre.get('to_rgb') else 'as loaded (BGR)',
        input_size=json.dumps(list(size)),
        input='(image - mean) / std, NCHW float32')


def export_onnx(config: str,
                checkpoint: str,
                out: str,
                size: Optional[Sequence[int]] = None,
                opset: int = 17,
                verify: bool = True,
                verify_batch: int = 3,
                atol: Optional[float] = None) -> OnnxReport:
    """Export a deploy model to ONNX with a dynamic batch dimension.

    Args:
        config (str): Deploy config.
        checkpoint (str): Deploy checkpoint.
        out (str): The ``.onnx`` file.
        size (Sequence[int], optional): (H, W); default from the test
            pipeline.
        opset (int): ONNX opset. Defaults to 17.
        verify (bool): Compare onnxruntime with PyTorch on a random batch of
            ``verify_batch`` (another batch size than the export's).
        verify_batch (int): Batch size of the check.
        atol (float, optional): Largest allowed logit difference; default:
            derived from the model (see :func:`verify_onnx`).

    Returns:
        OnnxReport: The file and the measured difference.
    """
    model, cfg = build_deploy_model(config, checkpoint)
    height, width = tuple(size) if size else input_size(cfg)
    wrapper = _LogitsAndScores(model).eval()
    example = torch.randn(1, 3, height, width)
    with torch.no_grad():
        torch.onnx.export(
            wrapper, (example, ),
            out,
            dynamo=False,
            input_names=['input'],
            output_names=['logits', 'scores'],
            dynamic_axes={
                'input': {
                    0: 'batch'
                },
                'logits': {
                    0: 'batch'
                },
                'scores': {
                    0: 'batch'
                }
            },
            opset_version=opset)
    meta = torch.load(
        checkpoint, map_location='cpu', weights_only=True).get('meta', {})
    _add_metadata(
        out, _metadata(cfg, meta.get('dataset_meta', {}), (height, width)))
    report = OnnxReport(out, (height, width))
    if verify:
        report.max_abs_diff = verify_onnx(model, out, (height, width),
                                          verify_batch, atol)
        report.verify_batch = verify_batch
    return report


def _add_metadata(path: str, props: dict) -> None:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx ships with torch
        raise ConversionError('ONNX export needs the onnx package: pip '
                              'install onnx') from exc
    graph = onnx.load(path)
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(graph, path)


def verify_onnx(model: nn.Module,
                path: str,
                size: Tuple[int, int],
                batch: int = 3,
                atol: Optional[float] = None,
                seed: int = 0) -> float:
    """Max |logit difference| between onnxruntime and PyTorch on a random
    batch.

    Args:
        model (nn.Module): The deploy model.
        path (str): The ONNX file.
        size (tuple): (H, W).
        batch (int): Batch size.
        atol (float, optional): Raise above this difference. Default: the
            float32 rounding of the model's sums in another order
            (:func:`dmue_mm.utils.numerics.float32_sum_tolerance` with its
            conv/linear layer count and largest fan-in, relative to the
            largest logit), as onnxruntime runs its own kernels.
        seed (int): Seed of the random batch.

    Returns:
        float: The largest absolute logit difference.

    Raises:
        ConversionError: If onnxruntime is missing or the outputs differ by
            more than ``atol`` (or the predicted classes differ).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConversionError(
            'checking the export needs onnxruntime: pip '
            'install onnxruntime (or pass --no-verify)') from exc
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, *size, generator=gen)
    with torch.no_grad():
        expected = model(inputs, mode='tensor').numpy()
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    logits, scores = session.run(None, {'input': inputs.numpy()})
    diff = float(np.abs(logits - expected).max())
    if atol is None:
        layers, fan_in = network_size(model)
        atol = float32_sum_tolerance(
            np.abs(expected).max(), fan_in, layers=layers)
    if diff > atol or (logits.argmax(1) != expected.argmax(1)).any():
        raise ConversionError(
            f'{path}: onnxruntime logits differ from PyTorch by {diff:.2e} '
            f'(allowed {atol:g})')
    # C probabilities of <= 8 eps relative error each (exp, sum, divide)
    if not np.allclose(
            scores.sum(1), 1.0, rtol=0,
            atol=8 * FLOAT32_EPS * scores.shape[1]):
        raise ConversionError(f'{path}: scores do not sum to 1')
    return diff
