"""Fixtures of the alignment tests: one MTCNN per session, the real photos
that ship in installed packages, and a steady way to re-detect landmarks."""
import cv2
import numpy as np
import pytest


@pytest.fixture(scope='session')
def detector():
    from dmue_mm.alignment import FaceDetector
    return FaceDetector()


@pytest.fixture(scope='session')
def photos():
    """{'grace_hopper': 600x512, 'astronaut': 512x512} RGB uint8."""
    from dmue_mm.alignment import sample_photos
    return sample_photos()


@pytest.fixture(scope='session')
def aligned(detector, photos):
    """``aligned(name, angle)``: the largest face of a photo rotated by
    ``angle`` degrees, aligned once per session."""
    from dmue_mm.alignment import align_face
    cache = {}

    def get(name: str, angle: float = 0):
        if (name, angle) not in cache:
            img = rotate_photo(photos[name], angle) if angle else photos[name]
            cache[name, angle] = align_face(img, detector)
        return cache[name, angle]

    return get


def rotate_photo(img: np.ndarray, angle: float) -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees on an enlarged canvas
    (nothing cut off)."""
    h, w = img.shape[:2]
    mat = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(mat[0, 0]), abs(mat[0, 1])
    new_w, new_h = int(h * sin + w * cos), int(h * cos + w * sin)
    mat[:, 2] += (new_w - w) / 2, (new_h - h) / 2
    return cv2.warpAffine(img, mat, (new_w, new_h))


def redetect(crop: np.ndarray, detector, template=None) -> np.ndarray:
    """MTCNN run again on an aligned crop: the median landmarks over three
    scales and their mirror images, with the template's squeeze undone and a
    black border for context (one MTCNN pass alone is noisy by a few px)."""
    from dmue_mm.alignment import DMUE_TEMPLATE, multiview_landmarks
    template = template or DMUE_TEMPLATE
    marks = multiview_landmarks([crop],
                                detector,
                                template.points,
                                scales=(0.8, 1.0, 1.25),
                                stretch_y=1 / template.aspect,
                                pad=0.25,
                                min_face_size=80)[0]
    assert marks is not None, 'MTCNN does not find the face in the crop'
    return marks
