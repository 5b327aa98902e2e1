"""MTCNN face detection in batches, from the ``facenet-pytorch`` wheel.

The P-, R- and O-net weights ship inside the wheel
(``facenet_pytorch/data/*.pt``) and are loaded from there: nothing is
downloaded. Detection runs on batches of images of the same size, which
gives exactly the boxes and landmarks of one-by-one detection (the scale
pyramid depends on the image size, so images of different sizes are never
padded into one batch).
"""
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from .geometry import transform_points

__all__ = [
    'Detection', 'PreparedImage', 'FaceDetector', 'prepare_for_detection',
    'group_by_shape'
]


@dataclass
class Detection:
    """The faces found in one image, largest box first.

    Attributes:
        boxes (np.ndarray): (N, 4) ``x0, y0, x1, y1`` in image pixels.
        probs (np.ndarray): (N,) face probabilities.
        landmarks (np.ndarray): (N, 5, 2) ``x, y`` of the left eye, right eye
            (as seen in the image), nose tip, left and right mouth corners.
        error (str, optional): Why detection failed on this image.
    """
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    probs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2)))
    error: Optional[str] = None

    def __len__(self) -> int:
        return len(self.boxes)

    def mapped(self, mat: np.ndarray) -> 'Detection':
        """The detection under an axis-aligned (2, 3) transform (scale and
        shift per axis, positive scales)."""
        corners = transform_points(mat, self.boxes.reshape(-1, 2, 2))
        return Detection(corners.reshape(-1, 4), self.probs,
                         transform_points(mat, self.landmarks), self.error)


class PreparedImage(NamedTuple):
    """An image ready for detection.

    Attributes:
        image (np.ndarray): The (downscaled, padded) uint8 RGB image.
        to_original (np.ndarray): (2, 3) transform from its pixel
            coordinates to those of the original image.
    """
    image: np.ndarray
    to_original: np.ndarray


def prepare_for_detection(img: np.ndarray,
                          max_size: Optional[int] = None,
                          pad: float = 0.0) -> PreparedImage:
    """Downscale a large image and optionally add a black border.

    Args:
        img (np.ndarray): (H, W, 3) uint8 RGB.
        max_size (int, optional): Longest side after downscaling (INTER_AREA);
            None or 0 keeps the size.
        pad (float): Border added on every side, as a fraction of the longest
            side. MTCNN misses faces that fill the whole image; a border gives
            them context.

    Returns:
        PreparedImage: The image and the map back to original pixels.
    """
    height, width = img.shape[:2]
    fx = fy = 1.0
    if max_size and max(height, width) > max_size:
        scale = max_size / max(height, width)
        size = (max(1, int(round(width * scale))),
                max(1, int(round(height * scale))))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        fx, fy = width / size[0], height / size[1]
    border = int(round(pad * max(img.shape[:2])))
    if border:
        img = cv2.copyMakeBorder(img,
                                 border,
                                 border,
                                 border,
                                 border,
                                 cv2.BORDER_CONSTANT,
                                 value=(0, 0, 0))
    # pixel u of the resized image covers original (u + .5) * f - .5
    to_original = np.array([[fx, 0, (0.5 - border) * fx - 0.5],
                            [0, fy, (0.5 - border) * fy - 0.5]])
    return PreparedImage(np.ascontiguousarray(img), to_original)


def group_by_shape(shapes: Sequence[Tuple[int, ...]],
                   batch_size: int) -> List[List[int]]:
    """Indices grouped by equal shape, in chunks of at most ``batch_size``."""
    groups: Dict[Tuple[int, ...], List[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(i)
    return [
        idx[s:s + batch_size] for idx in groups.values()
        for s in range(0, len(idx), batch_size)
    ]


class FaceDetector:
    """MTCNN (facenet-pytorch) with batching, downscaling and sorted output.

    Args:
        device (str): ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        min_face_size (int): Smallest face searched for, in pixels of the
            (downscaled) detection image.
        thresholds (Sequence[float]): P-, R-, O-net score thresholds.
        factor (float): Scale step of the image pyramid.
        max_size (int, optional): Images whose longest side is larger are
            downscaled for detection; boxes and landmarks are mapped back.
        batch_size (int): Images of one size per forward pass.

    The defaults are those of the original ``crop_align.py`` (MTCNN defaults,
    largest face first).
    """

    def __init__(self,
                 device: str = 'cpu',
                 min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709,
                 max_size: Optional[int] = 1280,
                 batch_size: int = 16):
        from facenet_pytorch import MTCNN  # heavy: imported on first use
        if len(thresholds) != 3:
            raise ValueError('thresholds must have 3 values (P-, R-, O-net), '
                             f'got {thresholds}')
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.device = torch.device(device)
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(
                f'device {device!r} was asked for but CUDA is not '
                'available: use --device cpu')
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.max_size = max_size
        self.batch_size = int(batch_size)
        mtcnn = MTCNN(device=self.device).eval()
        self.nets = (mtcnn.pnet, mtcnn.rnet, mtcnn.onet)

    def prepare(self, img: np.ndarray, pad: float = 0.0) -> PreparedImage:
        """:func:`prepare_for_detection` with this detector's ``max_size``."""
        return prepare_for_detection(img, self.max_size, pad)

    def detect(self,
               images: Sequence[np.ndarray],
               pad: float = 0.0,
               min_face_size: Optional[int] = None) -> List[Detection]:
        """Detect faces in full-size RGB images (any mix of sizes).

        Args:
            images (Sequence[np.ndarray]): (H, W, 3) uint8 RGB images.
            pad (float): Black border, see :func:`prepare_for_detection`.
            min_face_size (int, optional): Overrides the detector's value.

        Returns:
            list[Detection]: See :meth:`detect_prepared`.
        """
        return self.detect_prepared([self.prepare(im, pad) for im in images],
                                    min_face_size)

    def detect_prepared(
            self,
            prepared: Sequence[PreparedImage],
            min_face_size: Optional[int] = None) -> List[Detection]:
        """Detect faces in prepared images, batching those of equal size.

        Args:
            prepared (Sequence[PreparedImage]): Detection inputs.
            min_face_size (int, optional): Overrides the detector's value.

        Returns:
            list[Detection]: One per image, in original-image coordinates.
            An image on which MTCNN raised has ``error`` set.
        """
        results: List[Optional[Detection]] = [None] * len(prepared)
        groups = group_by_shape([p.image.shape for p in prepared],
                                self.batch_size)
        min_face = min_face_size or self.min_face_size
        for idx in groups:
            batch = [prepared[i].image for i in idx]
            for i, det in zip(idx, self._detect_same_size(batch, min_face)):
                results[i] = det.mapped(prepared[i].to_original)
        return results

    def _detect_same_size(self, images: List[np.ndarray],
                          min_face: int) -> List[Detection]:
        try:
            return self._run(np.stack(images), min_face)
        except Exception as exc:  # noqa: BLE001  MTCNN edge cases
            if len(images) == 1:
                return [Detection(error=f'detector error: {exc}')]
            # isolate the image that trips MTCNN
            return [
                d for im in images
                for d in self._detect_same_size([im], min_face)
            ]

    @torch.no_grad()
    def _run(self, batch: np.ndarray, min_face: int) -> List[Detection]:
        from facenet_pytorch.models.utils.detect_face import detect_face
        pnet, rnet, onet = self.nets
        all_boxes, all_points = detect_face(batch, min_face, pnet, rnet, onet,
                                            self.thresholds, self.factor,
                                            self.device)
        out = []
        for boxes, points in zip(all_boxes, all_points):
            boxes = np.asarray(boxes, np.float64).reshape(-1, 5)
            points = np.asarray(points, np.float64).reshape(-1, 5, 2)
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            order = np.argsort(-area, kind='stable')
            out.append(
                Detection(boxes[order, :4], boxes[order, 4], points[order]))
        return out
