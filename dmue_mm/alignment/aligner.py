"""Align (or crop) faces: detection, landmark refinement and one warp.

:func:`align_face` aligns one image, for inference; :class:`FaceAligner`
aligns batches, for the offline tool. Two modes:

* ``'align'`` (expression data, as the original ``crop_align.py``): a
  similarity from the five MTCNN landmarks to :data:`~.template.DMUE_TEMPLATE`
  with its fixed vertical squeeze, warped to 256x256 in one pass from the
  full-resolution image. With ``refine=True`` MTCNN runs a second time on the
  upright face (where its landmarks are more precise than on a tilted one) and
  the transform is fitted again from those landmarks.
* ``'crop'`` (MS-Celeb-style pretraining crops, docs/align.md): the largest box
  enlarged by 256/224 on each side and resized to 256x256 (no alignment).
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import cv2
import numpy as np

from dmue_mm.utils.errors import DataError

from .detector import Detection, FaceDetector, PreparedImage
from .geometry import (box_crop_transform, invert, transform_points,
                       warp_image)
from .template import DMUE_TEMPLATE, FaceTemplate, template_transform

__all__ = ['AlignedFace', 'AlignResult', 'FaceAligner', 'align_face', 'MODES']

MODES = ('align', 'crop')
# Context around the upright face for the refinement pass, as a fraction of
# the output size on each side.
_REFINE_MARGIN = 0.25


@dataclass
class AlignedFace:
    """One aligned face.

    Attributes:
        image (np.ndarray): (size, size, 3) uint8 RGB crop.
        matrix (np.ndarray): (2, 3) transform from input-image to crop pixels.
        box (np.ndarray): (4,) MTCNN box in the input image.
        landmarks (np.ndarray): (5, 2) landmarks in the input image (those
            of the refinement pass when it succeeded).
        prob (float): MTCNN face probability.
        refined (bool): Whether the refinement pass gave the landmarks.
    """
    image: np.ndarray
    matrix: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray
    prob: float
    refined: bool = False

    @property
    def crop_landmarks(self) -> np.ndarray:
        """(5, 2) landmarks in crop pixels."""
        return transform_points(self.matrix, self.landmarks)

    @property
    def crop_box(self) -> np.ndarray:
        """(4,) the MTCNN box in crop pixels (exact for crop mode; the
        bounding box of the mapped corners otherwise)."""
        x0, y0, x1, y1 = self.box
        pts = transform_points(self.matrix,
                               [[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
        return np.concatenate([pts.min(0), pts.max(0)])


@dataclass
class AlignResult:
    """The faces of one image (largest first), or why there are none."""
    faces: List[AlignedFace] = field(default_factory=list)
    error: Optional[str] = None


class FaceAligner:
    """Detect, (refine,) and warp faces in batches of images.

    Args:
        detector (FaceDetector, optional): Defaults to a CPU MTCNN.
        mode (str): ``'align'`` or ``'crop'``.
        template (FaceTemplate): Target of ``'align'``; its ``size`` and
            ``inner`` also set the ``'crop'`` geometry.
        keep_all (bool): Every face instead of the largest one.
        refine (bool): Second MTCNN pass on the upright face (``'align'``).
    """

    def __init__(self,
                 detector: Optional[FaceDetector] = None,
                 mode: str = 'align',
                 template: FaceTemplate = DMUE_TEMPLATE,
                 keep_all: bool = False,
                 refine: bool = True):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.detector = detector or FaceDetector()
        self.mode = mode
        self.template = template
        self.keep_all = keep_all
        self.refine = refine and mode == 'align'

    # ------------------------------------------------------------------
    def align_batch(
        self,
        images: Sequence[np.ndarray],
        prepared: Optional[Sequence[PreparedImage]] = None
    ) -> List[AlignResult]:
        """Align the faces of several images.

        Args:
            images (Sequence[np.ndarray]): Full-resolution (H, W, 3) uint8
                RGB images; the crops are warped from these.
            prepared (Sequence[PreparedImage], optional): Their detection
                inputs when already made (e.g. in DataLoader workers).

        Returns:
            list[AlignResult]: One per image.
        """
        if prepared is None:
            prepared = [self.detector.prepare(im) for im in images]
        detections = self.detector.detect_prepared(prepared)
        results, jobs = [], []
        for i, det in enumerate(detections):
            if det.error:
                results.append(AlignResult(error=det.error))
                continue
            if not len(det):
                results.append(AlignResult(error='no face found'))
                continue
            results.append(AlignResult())
            for j in range(len(det) if self.keep_all else 1):
                jobs.append(
                    (i, det.boxes[j], det.landmarks[j], float(det.probs[j])))
        landmarks = [job[2] for job in jobs]
        refined = [False] * len(jobs)
        if self.refine and jobs:
            landmarks, refined = self._refine([images[job[0]] for job in jobs],
                                              landmarks)
        for (i, box, _, prob), marks, done in zip(jobs, landmarks, refined):
            if self.mode == 'align':
                matrix = template_transform(marks, self.template)
            else:
                matrix = box_crop_transform(box, self.template.size,
                                            self.template.inner)
            size = self.template.size
            results[i].faces.append(
                AlignedFace(warp_image(images[i], matrix, (size, size)),
                            matrix, np.asarray(box, np.float64),
                            np.asarray(marks), prob, done))
        return results

    def _refine(self, images: List[np.ndarray], landmarks: List[np.ndarray]):
        """Re-detect the landmarks of each face on an upright, context-padded
        warp of it (and its mirror image); keep a face's first landmarks when
        the second pass does not find it again."""
        tpl = self.template
        margin = _REFINE_MARGIN * tpl.size
        width = int(round(tpl.size + 2 * margin))
        height = int(round(tpl.size / tpl.aspect + 2 * margin))
        upright = tpl.points / [1.0, tpl.aspect] + margin
        mats = [
            template_transform(m, FaceTemplate(upright)) for m in landmarks
        ]
        canvases = [
            warp_image(im, mat, (width, height))
            for im, mat in zip(images, mats)
        ]
        found = multiview_landmarks(
            canvases,
            self.detector,
            expected=upright,
            # the upright face is about tpl.inner pixels wide: skip the
            # pyramid levels that look for small faces
            min_face_size=max(20, int(tpl.inner * 0.4)))
        out, refined = [], []
        for marks, mat, first in zip(found, mats, landmarks):
            refined.append(marks is not None)
            out.append(first if marks is
                       None else transform_points(invert(mat), marks))
        return out, refined


def mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks in the horizontally mirrored image (left/right swapped)."""
    out = np.asarray(landmarks, np.float64)[..., [1, 0, 2, 4, 3], :].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


def multiview_landmarks(images: Sequence[np.ndarray],
                        detector: FaceDetector,
                        expected: np.ndarray,
                        scales: Sequence[float] = (1.0, ),
                        mirror: bool = True,
                        stretch_y: float = 1.0,
                        pad: float = 0.0,
                        min_face_size: Optional[int] = None,
                        tolerance: float = 0.25) -> List[Optional[np.ndarray]]:
    """Landmarks of a face at a known place, averaged over several views.

    One MTCNN landmark set is noisy (a few percent of the eye distance) and
    biased left-right; the median over rescaled and mirrored views of the
    same image is much steadier. Used by the refinement pass and to check
    aligned crops.

    Args:
        images (Sequence[np.ndarray]): (H, W, 3) uint8 RGB images.
        detector (FaceDetector): The detector; all views of all images are
            batched by size.
        expected (np.ndarray): (5, 2) roughly expected landmarks (the same
            for every image); in each view the face whose landmarks are
            nearest is taken.
        scales (Sequence[float]): View scales.
        mirror (bool): Add the mirror image of every view.
        stretch_y (float): Extra vertical scale of every view (e.g.
            ``1 / aspect`` to undo the template's squeeze).
        pad (float): Black border of every view (see
            :func:`~.detector.prepare_for_detection`).
        min_face_size (int, optional): Overrides the detector's value.
        tolerance (float): Largest mean distance from ``expected``, as a
            fraction of its eye distance, for a view's face to count.

    Returns:
        list: Per image, the (5, 2) per-coordinate median over the views
        that found the face, or None if fewer than half did.
    """
    expected = np.asarray(expected, np.float64)
    limit = tolerance * float(np.linalg.norm(expected[1] - expected[0]))
    views, inverse = [], []
    for img in images:
        height, width = img.shape[:2]
        for scale in scales:
            size = (max(1, int(round(width * scale))),
                    max(1, int(round(height * scale * stretch_y))))
            view = cv2.resize(img,
                              size,
                              interpolation=cv2.INTER_CUBIC if scale *
                              stretch_y >= 1 else cv2.INTER_AREA)
            back = [[width / size[0], 0, 0.5 * width / size[0] - 0.5],
                    [0, height / size[1], 0.5 * height / size[1] - 0.5]]
            flips = (False, True) if mirror else (False, )
            for flip in flips:
                views.append(
                    np.ascontiguousarray(view[:, ::-1]) if flip else view)
                inverse.append((np.array(back), flip, size[0]))
    dets = detector.detect(views, pad=pad, min_face_size=min_face_size)
    per_image = len(views) // max(len(images), 1)
    out = []
    for i in range(len(images)):
        found = []
        for det, (back, flip,
                  view_w) in zip(dets[i * per_image:(i + 1) * per_image],
                                 inverse[i * per_image:(i + 1) * per_image]):
            target = invert(back)
            target = transform_points(target, expected)
            if flip:
                target = mirror_landmarks(target, view_w)
            marks = _closest_landmarks(det, target, limit * back[0, 0]**-1)
            if marks is None:
                continue
            if flip:
                marks = mirror_landmarks(marks, view_w)
            found.append(transform_points(back, marks))
        out.append(
            np.median(np.stack(found), axis=0) if 2 *
            len(found) >= per_image else None)
    return out


def _closest_landmarks(det: Detection, expected: np.ndarray,
                       tolerance: float) -> Optional[np.ndarray]:
    """The detected landmarks nearest to ``expected`` if their mean distance
    is within ``tolerance``."""
    if det.error or not len(det):
        return None
    dist = np.linalg.norm(det.landmarks - expected, axis=2).mean(1)
    best = int(np.argmin(dist))
    return det.landmarks[best] if dist[best] <= tolerance else None


_DEFAULT_ALIGNERS = {}


def align_face(img: np.ndarray,
               detector: Optional[FaceDetector] = None,
               mode: str = 'align',
               keep_all: bool = False,
               refine: bool = True,
               template: FaceTemplate = DMUE_TEMPLATE) -> List[AlignedFace]:
    """Align the faces of one image (largest first), e.g. for inference.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB image (see
            :func:`~.imageio.load_rgb` to read a file).
        detector (FaceDetector, optional): Reused across calls; defaults to a
            CPU MTCNN built on first use.
        mode (str): ``'align'`` (DMUE template) or ``'crop'`` (box crop).
        keep_all (bool): All faces instead of the largest.
        refine (bool): Second landmark pass on the upright face.
        template (FaceTemplate): The alignment target.

    Returns:
        list[AlignedFace]: Empty when no face is found.

    Raises:
        DataError: If MTCNN fails on the image.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError('img must be (H, W, 3) uint8 RGB, got '
                         f'{img.dtype} {img.shape}')
    if detector is None:
        detector = _DEFAULT_ALIGNERS.setdefault('detector', FaceDetector())
    aligner = FaceAligner(detector, mode, template, keep_all, refine)
    result = aligner.align_batch([img])[0]
    if result.error and result.error != 'no face found':
        raise DataError(result.error)
    return result.faces
