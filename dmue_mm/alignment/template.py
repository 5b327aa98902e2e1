"""The 5-point alignment template of the original DMUE framing.

The original ``preprocess/crop_align.py`` aligns 98 FAN landmarks to a 98-point
template on an 800x800 canvas, runs MTCNN again on the aligned canvas and crops
the face box enlarged by 256/224 per side, resized to 256x256 (each axis on its
own). We have no FAN weights offline, so the template is reduced to the five
points MTCNN gives (template indices: pupils 96/97, nose tip 54, mouth corners
76/82) and the two passes are folded into one fixed 256x256 template:

1. :func:`original_two_pass` runs the original procedure with those five
   points on a photo and returns the crop map ``C`` (box enlargement and
   per-axis resize) of its second pass;
2. :func:`derive_template` averages ``C`` over photos and maps the five
   800-canvas points through it: :data:`DMUE_TEMPLATE`. MTCNN boxes are
   about 1.25 times taller than wide, so the original crop squeezes the face
   vertically; ``aspect`` (y scale / x scale) keeps that.

:func:`template_transform` then aligns any face in one warp: a similarity
onto the un-squeezed template, followed by the fixed squeeze. Running
``python -m dmue_mm.alignment.template`` re-derives the numbers from the
real photos that ship with matplotlib and scikit-image.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from .geometry import (similarity_transform, transform_points, warp_image)

__all__ = [
    'FaceTemplate', 'WFLW_TEMPLATE_800', 'DMUE_TEMPLATE', 'template_transform',
    'original_two_pass', 'derive_template', 'variants'
]

# Spec §6.2 points 96, 97 (pupils), 54 (nose tip), 76, 82 (mouth corners), on
# the 800x800 canvas, in MTCNN's landmark order.
WFLW_TEMPLATE_800 = np.array(
    [[314, 364], [484, 364], [395, 458], [310, 524], [480, 524]], np.float64)
ORIGINAL_CANVAS = 800


@dataclass(frozen=True)
class FaceTemplate:
    """Where the five landmarks go in the output crop.

    Attributes:
        points (np.ndarray): (5, 2) ``x, y`` output pixels of the left eye,
            right eye (as seen in the image), nose tip, left and right mouth
            corners.
        size (int): Output width and height.
        aspect (float): Vertical over horizontal scale of the crop (< 1
            squeezes the face vertically, as the original crop does).
        inner (int): Size of the central region that the face box fills
            (224 of 256 in the original; also the crop-mode rule).
    """
    points: np.ndarray
    size: int = 256
    aspect: float = 1.0
    inner: int = 224

    def __post_init__(self):
        points = np.asarray(self.points, np.float64)
        if points.shape != (5, 2):
            raise ValueError(f'template points must be (5, 2), got '
                             f'{points.shape}')
        if not 0 < self.inner <= self.size or self.aspect <= 0:
            raise ValueError('need 0 < inner <= size and aspect > 0, got '
                             f'inner={self.inner}, size={self.size}, '
                             f'aspect={self.aspect}')
        object.__setattr__(self, 'points', points)


# Derived by ``derive_template(variants(real photos))`` (see the module
# docstring and docs/align.md): 36 runs of the original two passes.
DMUE_TEMPLATE = FaceTemplate(points=np.array([[80.37, 97.80], [188.62, 97.80],
                                              [131.95,
                                               145.51], [77.82, 179.01],
                                              [186.07, 179.01]]),
                             size=256,
                             aspect=0.7971,
                             inner=224)


def template_transform(landmarks: np.ndarray,
                       template: FaceTemplate = DMUE_TEMPLATE) -> np.ndarray:
    """Transform that aligns five landmarks to the template.

    A least-squares similarity onto the template with its vertical squeeze
    undone, followed by the squeeze ``diag(1, aspect)``.

    Args:
        landmarks (np.ndarray): (5, 2) landmarks in the input image.
        template (FaceTemplate): The target.

    Returns:
        np.ndarray: (2, 3) input-to-output transform.
    """
    squeeze = np.diag([1.0, template.aspect])
    target = template.points / [1.0, template.aspect]
    sim = similarity_transform(landmarks, target)
    return squeeze @ sim


def original_two_pass(img: np.ndarray, detector) -> Optional[Dict]:
    """The original two-pass crop with the five-point template.

    Align the largest face's landmarks to :data:`WFLW_TEMPLATE_800` on an
    800x800 canvas (bilinear, black border), detect again, enlarge the
    largest box by ``pad = int((s * 256 / 224 - s) / 2)`` per side, clamp it
    to the canvas and resize the crop to 256x256.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB photo.
        detector (FaceDetector): The MTCNN detector.

    Returns:
        dict or None: ``crop`` (2, 3) canvas-to-crop map, ``landmarks`` the
        second-pass landmarks in the crop, ``image`` the 256x256 crop; None if
        either pass finds no face.
    """
    first = detector.detect([img])[0]
    if not len(first):
        return None
    sim = similarity_transform(first.landmarks[0], WFLW_TEMPLATE_800)
    canvas = warp_image(img, sim, (ORIGINAL_CANVAS, ORIGINAL_CANVAS))
    second = detector.detect([canvas])[0]
    if not len(second):
        return None
    box = np.clip(second.boxes[0], 0, ORIGINAL_CANVAS)
    lo, hi = box[:2].copy(), box[2:].copy()
    for axis in range(2):
        side = hi[axis] - lo[axis]
        pad = int((side * 256 / 224 - side) / 2)
        lo[axis] = max(int(lo[axis]) - pad, 0)
        hi[axis] = min(int(hi[axis]) + pad, ORIGINAL_CANVAS)
    # pixel u of the 256 crop covers canvas (u + .5) * extent / 256 - .5 + lo
    scale = 256 / (hi - lo)
    crop = np.array([[scale[0], 0, 0.5 * scale[0] - 0.5 - scale[0] * lo[0]],
                     [0, scale[1], 0.5 * scale[1] - 0.5 - scale[1] * lo[1]]])
    x0, y0, x1, y1 = (int(v) for v in (*lo, *hi))
    image = cv2.resize(canvas[y0:y1, x0:x1], (256, 256),
                       interpolation=cv2.INTER_CUBIC)
    return dict(crop=crop,
                landmarks=transform_points(crop, second.landmarks[0]),
                image=image)


def variants(img: np.ndarray,
             angles: Sequence[float] = (-15, 0, 15),
             scales: Sequence[float] = (0.7, 1.0, 1.4),
             mirror: bool = True) -> List[np.ndarray]:
    """Rotated, rescaled and mirrored copies of a photo (derivation inputs).
    """
    out = []
    for flip in ((False, True) if mirror else (False, )):
        base = np.ascontiguousarray(img[:, ::-1]) if flip else img
        h, w = base.shape[:2]
        for angle in angles:
            rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            turned = cv2.warpAffine(base, rot, (w, h))
            for scale in scales:
                size = (int(round(w * scale)), int(round(h * scale)))
                out.append(
                    cv2.resize(turned,
                               size,
                               interpolation=cv2.INTER_AREA
                               if scale < 1 else cv2.INTER_CUBIC))
    return out


def derive_template(images: Sequence[np.ndarray],
                    detector) -> Dict[str, np.ndarray]:
    """Derive the one-pass template from runs of the original two passes.

    Args:
        images (Sequence[np.ndarray]): RGB photos with one face each.
        detector (FaceDetector): The MTCNN detector.

    Returns:
        dict: ``template`` (:class:`FaceTemplate`, the averaged crop map
        applied to :data:`WFLW_TEMPLATE_800`), ``crop_mean``/``crop_std``
        (2, 3) statistics of the crop map, ``landmarks_mean``/
        ``landmarks_std`` (5, 2) of the second-pass MTCNN landmarks in the
        crops, and ``runs`` the number of photos where both passes found a
        face.
    """
    runs = [
        r for r in (original_two_pass(im, detector) for im in images)
        if r is not None
    ]
    if not runs:
        raise ValueError('no face found in any of the images')
    crops = np.stack([r['crop'] for r in runs])
    marks = np.stack([r['landmarks'] for r in runs])
    crop = crops.mean(0)
    template = FaceTemplate(points=transform_points(crop, WFLW_TEMPLATE_800),
                            aspect=float(crop[1, 1] / crop[0, 0]))
    return dict(template=template,
                crop_mean=crop,
                crop_std=crops.std(0),
                landmarks_mean=marks.mean(0),
                landmarks_std=marks.std(0),
                runs=len(runs))


def _main() -> None:  # pragma: no cover - documentation helper
    from .imageio import sample_photos
    from .detector import FaceDetector
    detector = FaceDetector()
    images = [v for img in sample_photos().values() for v in variants(img)]
    result = derive_template(images, detector)
    np.set_printoptions(precision=2, suppress=True)
    print(f'runs: {result["runs"]} of {len(images)}')
    print('crop map mean (800 canvas -> 256 crop):\n', result['crop_mean'])
    print('crop map std:\n', result['crop_std'])
    print('template points (256 crop):\n', result['template'].points)
    print(f'aspect (y scale / x scale): {result["template"].aspect:.4f}')
    print('second-pass MTCNN landmarks, mean:\n', result['landmarks_mean'])
    print('second-pass MTCNN landmarks, std:\n', result['landmarks_std'])


if __name__ == '__main__':
    _main()
