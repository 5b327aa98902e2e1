"""Generated image data for tests, demos and benchmarks.

No expression dataset ships in any package, so tests build their own tiny
data. Each class gets a distinct, easily learnable pattern (stripes with a
class-specific orientation, frequency and colour) plus pixel noise.
"""
import os
import os.path as osp
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

__all__ = ['make_pattern_images', 'write_image_folder']


def make_pattern_images(num_classes: int,
                        per_class: int,
                        size: int = 32,
                        seed: int = 0,
                        noise: float = 20.0) -> Tuple[np.ndarray, np.ndarray]:
    """Make ``num_classes * per_class`` RGB images with class patterns.

    Args:
        num_classes (int): Number of classes.
        per_class (int): Images per class.
        size (int): Height and width in pixels.
        seed (int): Seed of the pixel noise and pattern phases.
        noise (float): Std of the Gaussian pixel noise (0-255 scale).

    Returns:
        tuple: ``images`` (N, size, size, 3) uint8 RGB and ``labels`` (N,)
        int64, ordered class by class.
    """
    if num_classes < 1 or per_class < 1:
        raise ValueError('num_classes and per_class must be positive, got '
                         f'{num_classes} and {per_class}')
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images, labels = [], []
    for label in range(num_classes):
        angle = np.pi * label / num_classes
        freq = 2.0 + (label % 3)
        hue = 180.0 * label / num_classes
        colour = cv2.cvtColor(
            np.array([[[hue, 200, 230]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
        for _ in range(per_class):
            phase = rng.uniform(0, 2 * np.pi)
            wave = np.sin(2 * np.pi * freq *
                          (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
            img = (0.5 + 0.5 * wave)[..., None] * colour[None, None, :]
            img = img + rng.normal(0, noise, img.shape)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def write_image_folder(root: str,
                       classes: Sequence[str],
                       splits: Dict[str, int],
                       size: int = 32,
                       seed: int = 0,
                       ext: str = '.png') -> Dict[str, int]:
    """Write a ``root/<split>/<class>/<index><ext>`` image tree.

    Args:
        root (str): Output folder.
        classes (Sequence[str]): Class names, in label order.
        splits (dict): Images per class for each split, e.g.
            ``{'train': 8, 'val': 4}``.
        size (int): Image size.
        seed (int): Base seed; each split uses its own offset.
        ext (str): Image file extension (``.png`` is lossless).

    Returns:
        dict: Number of images written per split.
    """
    counts = {}
    for offset, (split, per_class) in enumerate(splits.items()):
        images, labels = make_pattern_images(
            len(classes), per_class, size=size, seed=seed + 1000 * offset)
        for index, (img, label) in enumerate(zip(images, labels)):
            folder = osp.join(root, split, classes[label])
            os.makedirs(folder, exist_ok=True)
            path = osp.join(folder, f'{index:05d}{ext}')
            cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        counts[split] = len(labels)
    return counts
