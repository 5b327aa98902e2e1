"""MTCNN wrapper: offline weights, exact batching, downscaling."""
import socket

import cv2
import numpy as np
import pytest
import torch

from dmue_mm.alignment import (FaceDetector, group_by_shape,
                               prepare_for_detection, transform_points)


class TestFaceDetector:

    def test_builds_offline(self, monkeypatch):

        def refuse(*args, **kwargs):
            raise AssertionError('the detector tried to use the network')

        monkeypatch.setattr(socket.socket, 'connect', refuse)
        monkeypatch.setattr(socket, 'create_connection', refuse)
        det = FaceDetector()
        assert all(not m.training for m in det.nets)

    def test_cuda_without_gpu(self):
        if torch.cuda.is_available():
            pytest.skip('a GPU is present')
        with pytest.raises(ValueError, match='--device cpu'):
            FaceDetector(device='cuda')

    def test_batch_equals_one_by_one(self, detector, photos):
        imgs = [
            cv2.resize(photos[name], (256, 300))
            for name in ('grace_hopper', 'astronaut')
        ]
        imgs.append(np.zeros((300, 256, 3), np.uint8))  # no face
        imgs.append(cv2.resize(photos['astronaut'], (200, 200)))  # other size
        together = detector.detect(imgs)
        alone = [detector.detect([im])[0] for im in imgs]
        assert [len(d) for d in together] == [1, 1, 0, 1]
        for a, b in zip(together, alone):
            assert len(a) == len(b)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
            np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


class TestPrepare:

    def test_downscale_maps_back_exactly(self):
        img = np.zeros((1000, 2000, 3), np.uint8)
        img[498:503, 998:1003] = 255  # a 5x5 dot centred on (1000, 500)
        prep = prepare_for_detection(img, max_size=1280, pad=0.1)
        border = round(0.1 * 1280)
        assert prep.image.shape == (640 + 2 * border, 1280 + 2 * border, 3)
        weight = prep.image[..., 0].astype(float)
        ys, xs = np.indices(weight.shape)
        centre = [(xs * weight).sum() / weight.sum(),
                  (ys * weight).sum() / weight.sum()]
        np.testing.assert_allclose(transform_points(prep.to_original, centre),
                                   [1000, 500],
                                   atol=0.05)

    def test_small_image_untouched(self):
        img = np.ones((30, 40, 3), np.uint8)
        prep = prepare_for_detection(img, max_size=1280)
        assert prep.image.shape == img.shape
        np.testing.assert_array_equal(prep.to_original, np.eye(3)[:2])

    def test_group_by_shape(self):
        shapes = [(2, 2), (3, 3), (2, 2), (2, 2), (3, 3)]
        assert group_by_shape(shapes, 2) == [[0, 2], [3], [1, 4]]
