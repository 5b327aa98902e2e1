"""2-D transforms of the alignment: similarity fits, box crops and warping.

Every transform is a (2, 3) float64 matrix ``M`` mapping input pixel
coordinates ``(x, y)`` to output coordinates ``M @ (x, y, 1)``, OpenCV's
convention for :func:`cv2.warpAffine` (pixel centres at integers).
"""
from typing import Sequence, Tuple

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

__all__ = [
    'similarity_transform', 'compose', 'invert', 'transform_points',
    'box_crop_transform', 'warp_image'
]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) that
    maps ``src`` onto ``dst``: Umeyama's (1991) fit, no reflection, from
    :meth:`skimage.transform.SimilarityTransform.from_estimate`.

    Args:
        src (np.ndarray): (N, 2) source points, N >= 2.
        dst (np.ndarray): (N, 2) target points.

    Returns:
        np.ndarray: (2, 3) matrix minimising ``sum |M(src) - dst|^2``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(
            src) < 2:
        raise ValueError('src and dst must be (N, 2) arrays of the same '
                         f'shape with N >= 2, got {src.shape} and {dst.shape}')
    fit = SimilarityTransform.from_estimate(src, dst)
    if not fit:
        raise ValueError('the source points coincide: no similarity fits')
    return fit.params[:2].copy()


def compose(*mats: np.ndarray) -> np.ndarray:
    """Compose (2, 3) transforms: ``compose(A, B)`` applies B, then A."""
    out = np.eye(3)
    for mat in mats:
        out = out @ np.vstack([np.asarray(mat, np.float64), [0, 0, 1]])
    return out[:2]


def invert(mat: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine transform."""
    return np.linalg.inv(np.vstack([np.asarray(mat, np.float64), [0, 0,
                                                                  1]]))[:2]


def transform_points(mat: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) transform to (..., 2) points."""
    points = np.asarray(points, np.float64)
    return points @ mat[:, :2].T + mat[:, 2]


def box_crop_transform(box: Sequence[float], size: int,
                       inner: int) -> np.ndarray:
    """Transform that maps ``box`` onto the central ``inner`` pixels of a
    ``size`` x ``size`` crop, scaling each axis on its own.

    This is the original crop rule (the box enlarged by ``size / inner`` on
    each side, then resized to ``size`` x ``size``) without its rounding, so
    that the box lands exactly on ``[(size - inner) / 2, (size + inner) / 2]``
    in both axes.

    Args:
        box (Sequence[float]): ``(x0, y0, x1, y1)`` in input pixels.
        size (int): Output size.
        inner (int): Size of the central region that the box fills.

    Returns:
        np.ndarray: (2, 3) matrix.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f'empty box {tuple(box)}')
    margin = (size - inner) / 2
    sx, sy = inner / (x1 - x0), inner / (y1 - y0)
    return np.array([[sx, 0, margin - sx * x0], [0, sy, margin - sy * y0]])


def _source_roi(mat: np.ndarray, out_size: Tuple[int, int],
                img_shape: Tuple[int, int],
                margin: int) -> Tuple[int, int, int, int]:
    """The input rectangle (clipped, with ``margin`` input pixels around)
    that the output canvas samples from."""
    w, h = out_size
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]])
    src = transform_points(invert(mat), corners)
    x0, y0 = np.floor(src.min(0)).astype(int) - margin
    x1, y1 = np.ceil(src.max(0)).astype(int) + margin + 1
    return (max(x0, 0), max(y0, 0), min(x1,
                                        img_shape[1]), min(y1, img_shape[0]))


def warp_image(img: np.ndarray, mat: np.ndarray,
               out_size: Tuple[int, int]) -> np.ndarray:
    """Warp ``img`` with ``mat`` onto a black ``out_size`` canvas.

    Bilinear, like the original ``skimage.transform.warp(order=1, cval=0)``,
    with one addition against aliasing: when the warp shrinks the face (a
    large photo), the input region it samples is first reduced with
    ``cv2.INTER_AREA`` to the output resolution, then warped at about unit
    scale. A face that is enlarged is warped directly from the full-resolution
    image.

    Args:
        img (np.ndarray): (H, W, C) uint8 image.
        mat (np.ndarray): (2, 3) input-to-output transform.
        out_size (tuple): ``(width, height)`` of the output.

    Returns:
        np.ndarray: (height, width, C) uint8.
    """
    mat = np.asarray(mat, np.float64)
    shrink = float(np.linalg.svd(mat[:, :2], compute_uv=False).max())
    if shrink < 0.5:
        # two output pixels of margin, so that bilinear sampling at the
        # canvas edge stays inside the reduced region
        x0, y0, x1, y1 = _source_roi(mat, out_size, img.shape[:2],
                                     int(np.ceil(2 / shrink)))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            roi = img[y0:y1, x0:x1]
            new_w = max(1, int(round((x1 - x0) * shrink)))
            new_h = max(1, int(round((y1 - y0) * shrink)))
            roi = cv2.resize(roi, (new_w, new_h), interpolation=cv2.INTER_AREA)
            # roi pixel (u, v) covers input ((u + .5) * fx - .5 + x0, ...)
            fx, fy = (x1 - x0) / new_w, (y1 - y0) / new_h
            to_input = np.array([[fx, 0, 0.5 * fx - 0.5 + x0],
                                 [0, fy, 0.5 * fy - 0.5 + y0]])
            img, mat = roi, compose(mat, to_input)
    return cv2.warpAffine(img,
                          mat,
                          tuple(int(v) for v in out_size),
                          flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)
