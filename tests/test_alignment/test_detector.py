"""MTCNN wrapper: offline weights, exact batching, downscaling."""
import socket

import cv2
import numpy as np
import pytest
import torch
from dmue_testing import sum_atol

from dmue_mm.alignment import (FaceDetector, group_by_shape,
                               prepare_for_detection, transform_points)
from dmue_mm.utils.numerics import network_size


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
        # a batch may run other float32 kernels than one image: the cascade
        # of MTCNN's three nets (all their conv/linear layers, the largest
        # fan-in) gives the outputs' relative error (sum_atol's model);
        # boxes and landmarks are offsets times the box size (< 300 px),
        # probabilities move by <= 1/4 of their logit's change (|logit| is
        # < 20 for these faces)
        sizes = [network_size(net) for net in detector.nets]
        rel = sum_atol(torch.ones(1), max(n for _, n in sizes),
                       layers=sum(n for n, _ in sizes))
        for a, b in zip(together, alone):
            assert len(a) == len(b)
            np.testing.assert_allclose(a.boxes, b.boxes, rtol=0,
                                       atol=rel * 300)
            np.testing.assert_allclose(a.landmarks, b.landmarks, rtol=0,
                                       atol=rel * 300)
            np.testing.assert_allclose(a.probs, b.probs, rtol=0,
                                       atol=rel * 20 / 4)


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
        # the 5x5 dot is resized by 0.64 (area interpolation): its intensity
        # centroid is kept up to the interpolation's edge weights, well
        # under 0.05 px; the map back is exact float64 affine
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
