"""GaussianPixelNoise and TorchvisionRandomErasing against the original's
torchvision transforms."""
import math

import numpy as np
import pytest
import torch
from torchvision import transforms as tvt

from mmpretrain.registry import MODELS, TRANSFORMS


def build(type_, **kwargs):
    return TRANSFORMS.build(dict(type=type_, **kwargs))


class TestGaussianPixelNoise:

    def test_variance_clip_and_dtype(self):
        np.random.seed(0)
        noise = build('GaussianPixelNoise', prob=1.0, var=30.0)
        img = np.full((100, 100, 3), 128, np.uint8)
        out = noise.transform({'img': img.copy()})['img']
        assert out.dtype == np.uint8
        diff = out.astype(np.float64) - 128
        # truncation to uint8 shifts by ~-0.5 and adds 1/12 to the variance;
        # 30,000 values estimate the std to within ~0.4% (1 sd)
        assert diff.std() == pytest.approx(math.sqrt(30 + 1 / 12), rel=0.02)
        assert diff.mean() == pytest.approx(-0.5, abs=0.1)
        bright = noise.transform({'img': np.full((50, 50, 3), 254,
                                                 np.uint8)})['img']
        assert bright.max() == 255 and (bright < 254).any()

    def test_probability(self):
        np.random.seed(1)
        noise = build('GaussianPixelNoise')  # prob 0.25
        img = np.full((2, 2, 3), 100, np.uint8)
        changed = [
            not np.array_equal(noise.transform({'img': img})['img'], img)
            for _ in range(4000)
        ]
        # binomial sd sqrt(.25 * .75 / 4000) = 0.0068; a noisy 2x2x3 image
        # equals the input with probability ~0.4^12 (negligible)
        assert np.mean(changed) == pytest.approx(0.25, abs=0.03)


class TestTorchvisionRandomErasing:

    def test_fill_is_zero_after_normalisation(self):
        np.random.seed(0)
        erase = build('TorchvisionRandomErasing', prob=1.0)
        img = np.full((224, 224, 3), 255, np.uint8)
        out = erase.transform({'img': img})['img']
        assert out.dtype == np.float32
        mask = out[..., 0] == 127.5
        rows, cols = np.nonzero(mask)
        box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all()  # one filled rectangle
        assert 0.02 * 224 * 224 - 224 <= mask.sum() <= 0.25 * 224 * 224 + 448
        preprocessor = MODELS.build(
            dict(
                type='ClsDataPreprocessor',
                mean=[127.5] * 3,
                std=[127.5] * 3,
                to_rgb=True))
        inputs = preprocessor(
            {'inputs': [torch.from_numpy(out).permute(2, 0, 1)]})['inputs']
        assert (inputs[0][:, mask] == 0).all()
        assert (inputs[0][:, ~mask] == 1).all()

    def test_no_erasing_still_float(self):
        erase = build('TorchvisionRandomErasing', prob=0.0)
        img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
        out = erase.transform({'img': img})['img']
        assert out.dtype == np.float32 and np.array_equal(out, img)

    def test_same_distribution_as_torchvision(self):
        """Erasing probability, area and aspect ratio statistics match
        torchvision's RandomErasing(p=0.5, scale=(0.02, 0.25),
        ratio=(0.3, 3.3)) on 1,000 draws each (tolerances ~4 sd)."""
        np.random.seed(0)
        torch.manual_seed(0)
        size, draws = 64, 1000
        ours = build('TorchvisionRandomErasing', value=127.5)
        theirs = tvt.RandomErasing(
            p=0.5, scale=(0.02, 0.25), ratio=(0.3, 3.3), value=0)

        def stats(masks):
            erased = [m for m in masks if m.any()]
            areas = [m.sum() / m.size for m in erased]
            aspects = [
                math.log(np.any(m, 1).sum() / np.any(m, 0).sum())
                for m in erased
            ]
            return len(erased) / len(masks), np.mean(areas), np.mean(aspects)

        white = np.full((size, size, 3), 255, np.uint8)
        ours_masks = [
            ours.transform({'img': white})['img'][..., 0] == 127.5
            for _ in range(draws)
        ]
        ones = torch.ones(3, size, size)
        theirs_masks = [(theirs(ones)[0] == 0).numpy() for _ in range(draws)]
        p_ours, area_ours, log_ar_ours = stats(ours_masks)
        p_theirs, area_theirs, log_ar_theirs = stats(theirs_masks)
        # p: sd 0.016 each; area (uniform on [0.02, 0.25], sd 0.066 over
        # ~500 draws): sd of the difference 0.0042; log aspect (uniform on
        # [log 0.3, log 3.3], sd 0.69): sd of the difference 0.044
        assert p_ours == pytest.approx(p_theirs, abs=0.09)
        assert area_ours == pytest.approx(area_theirs, abs=0.017)
        assert log_ar_ours == pytest.approx(log_ar_theirs, abs=0.18)
        assert area_ours == pytest.approx(0.135, abs=0.017)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match='prob'):
            build('TorchvisionRandomErasing', prob=2.0)
        with pytest.raises(ValueError, match='scale'):
            build('TorchvisionRandomErasing', scale=(0.5, 0.1))
        with pytest.raises(ValueError, match='var'):
            build('GaussianPixelNoise', var=-1.0)
