"""Robust image reading for the alignment tool.

:func:`load_rgb` turns whatever a dataset holds into (H, W, 3) uint8 RGB:
EXIF orientation applied, grey, palette, grey+alpha, RGBA, CMYK, 16-bit and
float images converted, truncated or unreadable files reported as
:class:`ImageReadError` with the reason.
"""
import os.path as osp
import warnings
from typing import Dict

import cv2
import numpy as np
from PIL import Image, ImageOps

from dmue_mm.utils.errors import DataError

__all__ = [
    'IMAGE_EXTENSIONS', 'ImageReadError', 'load_rgb', 'to_rgb_uint8',
    'sample_photos'
]

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp',
                    '.ppm', '.pgm', '.pbm', '.gif', '.jp2')


class ImageReadError(DataError):
    """A file that is missing or does not decode as an image."""


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map 16-bit, 32-bit integer or float pixel values to 0..255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float64))
        peak = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return np.clip(arr * (255.0 / peak), 0, 255).round().astype(np.uint8)
    # integers: 16-bit data (also stored in PIL's 32-bit 'I' mode) -> / 257
    arr = arr.astype(np.int64)
    if arr.max(initial=0) > 255 or arr.dtype.itemsize > 1 and \
            arr.min(initial=0) < 0:
        arr = np.clip(arr, 0, 65535) / 257.0
    return np.clip(arr, 0, 255).round().astype(np.uint8)


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image of any mode to (H, W, 3) uint8 RGB.

    Alpha is dropped (as the original ``imread(...)[:, :, :3]``); 16-bit and
    float values are rescaled, not clipped.
    """
    if img.mode in ('RGB', 'L', 'P', 'RGBA', 'LA', 'PA', 'CMYK', 'YCbCr',
                    'LAB', 'HSV', '1', 'RGBa', 'La', 'RGBX'):
        if img.mode == 'P' and 'transparency' in img.info:
            img = img.convert('RGBA')
        return np.asarray(img.convert('RGB'), dtype=np.uint8).copy()
    arr = _scale_to_uint8(np.asarray(img))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def _load_with_opencv(path: str) -> np.ndarray:
    """Fallback for files PIL cannot open (e.g. some 16-bit TIFFs)."""
    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if arr is None:
        return None
    arr = _scale_to_uint8(arr)
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(arr[..., :4], code)


def load_rgb(path: str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, upright per its EXIF tag.

    Args:
        path (str): The image file.

    Returns:
        np.ndarray: The image.

    Raises:
        ImageReadError: Missing file, truncated or unreadable image; the
            message is the reason written to the report.
    """
    if not osp.isfile(path):
        raise ImageReadError('missing file')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # EXIF / palette warnings
            with Image.open(path) as img:
                img.load()
                try:
                    img = ImageOps.exif_transpose(img)
                except Exception:  # noqa: BLE001  broken EXIF: keep as is
                    pass
                rgb = to_rgb_uint8(img)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f'too large: {exc}') from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc).split('\n')[0] or type(exc).__name__
        # OpenCV reads some files PIL does not (e.g. 16-bit colour TIFFs),
        # but it silently returns the readable part of a truncated JPEG
        rgb = None if 'truncated' in reason else _load_with_opencv(path)
        if rgb is None:
            raise ImageReadError(
                f'corrupt or unreadable image: {reason}') from exc
    if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageReadError(f'unexpected image shape {rgb.shape}')
    return rgb


def sample_photos() -> Dict[str, np.ndarray]:
    """The real face photos that ship in installed packages (RGB uint8):
    matplotlib's ``grace_hopper.jpg`` and scikit-image's astronaut."""
    import matplotlib
    import skimage.data
    path = osp.join(matplotlib.get_data_path(), 'sample_data',
                    'grace_hopper.jpg')
    return {
        'grace_hopper': load_rgb(path),
        'astronaut': np.ascontiguousarray(skimage.data.astronaut()[..., :3]),
    }
