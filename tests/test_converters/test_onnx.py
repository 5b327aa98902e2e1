"""ONNX export of the deploy model vs PyTorch, through onnxruntime."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from dmue_testing import EPS32, sum_atol

from dmue_mm.converters import (DeploySpec, DeployWriter, build_deploy_model,
                                export_onnx)
from dmue_mm.utils.numerics import network_size
from .deploy_helpers import TINY_RESNET, dmue_cfg, trained_like

pytestmark = pytest.mark.numeric

FACE_RESNET = dict(TINY_RESNET, type='FaceResNet')


class TestOnnxExport:

    @pytest.mark.parametrize('backbone,shape', [(TINY_RESNET, None),
                                                (FACE_RESNET, (48, 40))])
    def test_matches_pytorch(self, backbone, shape, tmp_path):
        cfg = dmue_cfg(backbone)
        model = trained_like(cfg, seed=1)
        files = DeployWriter(
            DeploySpec.from_model(model, cfg),
            classes=['x', 'y', 'z']).write(model.state_dict(), str(tmp_path),
                                           'm')
        out = str(tmp_path / 'm.onnx')
        size = shape or (224, 224)  # the original's centre crop by default
        deploy, _ = build_deploy_model(files.config, files.checkpoint)
        x = torch.randn(5, 3, *size)
        with torch.no_grad():
            expected = deploy(x, mode='tensor')
        # onnxruntime runs every conv/linear layer with its own kernels
        layers, fan_in = network_size(deploy)
        atol = sum_atol(expected, fan_in, layers)
        report = export_onnx(
            files.config, files.checkpoint, out, size=shape, atol=atol)
        assert report.input_size == size
        assert report.max_abs_diff <= atol

        # an independent check with another batch size (dynamic batch)
        session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
        logits, scores = session.run(None, {'input': x.numpy()})
        assert np.abs(logits - expected.numpy()).max() <= atol
        assert (logits.argmax(1) == expected.numpy().argmax(1)).all()
        # 3 probabilities of <= 8 eps relative error each (a vectorised exp
        # of a few ulp, the 3-term sum, the division)
        np.testing.assert_allclose(scores.sum(1), 1.0, atol=3 * 8 * EPS32)
        props = {p.key: p.value for p in onnx.load(out).metadata_props}
        assert json.loads(props['classes']) == ['x', 'y', 'z']
        assert json.loads(props['mean']) == [127.5] * 3
