"""Training transforms of the DMUE recipe that MMPretrain lacks
(docs/datasets.md).

* :class:`GaussianPixelNoise`: the original's first augmentation, Gaussian
  noise on the raw uint8 image.
* :class:`TorchvisionRandomErasing`: torchvision's ``RandomErasing``, which
  the original applies *after* ``Normalize``. In MMPretrain normalisation
  happens later, in the data preprocessor, so erasing with ``value`` equal
  to the preprocessor's mean (127.5 for mean = std = 127.5) before it is the
  same as erasing with 0 after it. MMPretrain's own ``RandomErasing`` comes
  close but fills uint8 (127 or 128, i.e. -/+0.0039 after normalisation
  instead of 0) and never places a patch at the last row/column offset.
"""
import math
from numbers import Number
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform

from mmpretrain.registry import TRANSFORMS

__all__ = ['GaussianPixelNoise', 'TorchvisionRandomErasing']


@TRANSFORMS.register_module()
class GaussianPixelNoise(BaseTransform):
    """Add Gaussian noise to a uint8 image with probability ``prob``.

    As the first step of the original DMUE training transform: noise with mean
    0 and variance ``var`` (in 0-255 units) per pixel and channel, then clip to
    [0, 255] and truncate to uint8.

    **Required Keys:** ``img`` (uint8). **Modified Keys:** ``img``.

    Args:
        prob (float): Probability of adding noise. Defaults to 0.25.
        var (float): Variance of the noise. Defaults to 30.
    """

    def __init__(self, prob: float = 0.25, var: float = 30.0):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        if var < 0:
            raise ValueError(f'var must be non-negative, got {var}')
        self.prob = prob
        self.var = var

    def transform(self, results: dict) -> dict:
        """Add the noise (or not)."""
        if np.random.rand() < self.prob:
            img = results['img']
            noisy = img + np.random.normal(0.0, math.sqrt(self.var), img.shape)
            results['img'] = np.clip(noisy, 0, 255).astype(np.uint8)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(prob={self.prob}, var={self.var})'


@TRANSFORMS.register_module()
class TorchvisionRandomErasing(BaseTransform):
    """torchvision's ``RandomErasing``, on an HWC image before normalisation.

    With probability ``prob``, up to ``max_attempts`` rectangles are drawn
    (area fraction uniform in ``scale``, aspect ratio log-uniform in
    ``ratio``, ``h = round(sqrt(area * r))``, ``w = round(sqrt(area / r))``);
    the first one that fits strictly inside the image (``h < H``, ``w < W``)
    is placed at a uniform offset in ``[0, H - h]`` x ``[0, W - w]`` and
    filled with ``value``. The output is float32 whether or not it erased,
    so that a batch has one dtype (the data preprocessor casts to float
    anyway).

    **Required Keys:** ``img``. **Modified Keys:** ``img`` (float32).

    Args:
        prob (float): Probability of erasing. Defaults to 0.5.
        scale (tuple): Range of the erased area fraction.
        ratio (tuple): Range of the aspect ratio h / w.
        value (float | Sequence[float]): Fill value in pixel units (a
            sequence is per channel, in the image's channel order). Use the
            data preprocessor's mean: 127.5 here, which becomes exactly 0
            after normalisation, like torchvision's ``value=0`` after
            ``Normalize(0.5, 0.5)``.
        max_attempts (int): Rectangles tried before giving up (torchvision
            uses 10).
    """

    def __init__(self,
                 prob: float = 0.5,
                 scale: Tuple[float, float] = (0.02, 0.25),
                 ratio: Tuple[float, float] = (0.3, 3.3),
                 value: Union[float, Sequence[float]] = 127.5,
                 max_attempts: int = 10):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        if not 0.0 <= scale[0] <= scale[1] <= 1.0:
            raise ValueError(f'scale must be (min, max) within [0, 1], got '
                             f'{scale}')
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f'ratio must be (min, max) with 0 < min <= max, '
                             f'got {ratio}')
        if not isinstance(value, Number) and len(value) not in (1, 3):
            raise ValueError(f'value must be a number or 3 numbers, got '
                             f'{value}')
        self.prob = prob
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.value = value
        self.max_attempts = max_attempts

    def get_params(self, height: int,
                   width: int) -> Optional[Tuple[int, int, int, int]]:
        """Draw ``(top, left, h, w)``, or None when no rectangle fits."""
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.max_attempts):
            area = height * width * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(*log_ratio))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if h < height and w < width:
                top = np.random.randint(0, height - h + 1)
                left = np.random.randint(0, width - w + 1)
                return top, left, h, w
        return None

    def transform(self, results: dict) -> dict:
        """Erase a rectangle (or not) and convert to float32."""
        img = np.array(results['img'], dtype=np.float32)
        if np.random.rand() < self.prob:
            params = self.get_params(*img.shape[:2])
            if params is not None:
                top, left, h, w = params
                img[top:top + h, left:left + w] = np.asarray(
                    self.value, dtype=np.float32)
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(prob={self.prob}, scale={self.scale}, '
                f'ratio={self.ratio}, value={self.value})')
