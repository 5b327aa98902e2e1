"""ONNX export of the deploy model vs PyTorch, through onnxruntime."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dmue_mm.converters import (DeploySpec, DeployWriter, build_deploy_model,
                                export_onnx)
from .deploy_helpers import TINY_RESNET, dmue_cfg, trained_like

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
        report = export_onnx(files.config, files.checkpoint, out, size=shape)
        size = shape or (224, 224)  # the original's centre crop by default
        assert report.input_size == size
        assert report.max_abs_diff <= 1e-4

        # an independent check with another batch size (dynamic batch)
        deploy, _ = build_deploy_model(files.config, files.checkpoint)
        x = torch.randn(5, 3, *size)
        with torch.no_grad():
            expected = deploy(x, mode='tensor').numpy()
        session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
        logits, scores = session.run(None, {'input': x.numpy()})
        assert np.abs(logits - expected).max() <= 1e-4
        assert (logits.argmax(1) == expected.argmax(1)).all()
        np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)
        props = {p.key: p.value for p in onnx.load(out).metadata_props}
        assert json.loads(props['classes']) == ['x', 'y', 'z']
        assert json.loads(props['mean']) == [127.5] * 3
