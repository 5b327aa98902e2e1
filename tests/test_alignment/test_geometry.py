"""Similarity fits, box crops, warping and the template transform."""
import cv2
import numpy as np
import pytest

from dmue_mm.alignment import (DMUE_TEMPLATE, WFLW_TEMPLATE_800, FaceTemplate,
                               box_crop_transform, compose, invert,
                               similarity_transform, template_transform,
                               transform_points, warp_image)


def _similarity(scale, angle_deg, tx, ty):
    a = np.radians(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, [[tx], [ty]]])


# Tolerances: float64 throughout. A similarity fitted to points with
# coordinates <= 256 solves a 4-unknown least-squares problem whose
# condition number is at most ~1e4 (coordinates squared against a unit
# column): the fit is exact up to ~1e4 * 2.2e-16 * 256 ~ 6e-10; atol 1e-9.
# Composition and inversion of transforms with entries <= 2: a few
# roundings, ~1e-15; atol 1e-12 (and assert_allclose's rtol 1e-7).


class TestSimilarity:

    def test_recovers_exact_similarity(self):
        rng = np.random.default_rng(0)
        src = rng.uniform(0, 100, (5, 2))
        true = _similarity(1.7, 23.0, -12.0, 40.0)
        fit = similarity_transform(src, transform_points(true, src))
        np.testing.assert_allclose(fit, true, atol=1e-9)

    def test_least_squares_optimum(self):
        rng = np.random.default_rng(1)
        src = rng.uniform(0, 100, (5, 2))
        dst = transform_points(_similarity(0.8, -10, 5, 5), src)
        dst += rng.normal(0, 3, dst.shape)
        fit = similarity_transform(src, dst)
        best = ((transform_points(fit, src) - dst)**2).sum()
        # any perturbation of scale/angle/shift does worse
        a, b = fit[0, 0], fit[1, 0]
        for da, db, dt in [(1e-3, 0, 0), (0, 1e-3, 0), (0, 0, 1e-2),
                           (-1e-3, 0, 0), (0, -1e-3, 0), (0, 0, -1e-2)]:
            other = np.array([[a + da, -(b + db), fit[0, 2] + dt],
                              [b + db, a + da, fit[1, 2]]])
            assert ((transform_points(other, src) - dst)**2).sum() > best

    def test_no_reflection(self):
        src = np.array([[0., 0.], [1., 0.], [0., 1.]])
        mirrored = src * [-1, 1]
        fit = similarity_transform(src, mirrored)
        assert np.linalg.det(fit[:, :2]) > 0

    def test_template_fit_unchanged(self):
        """The matrix of the hand-written Umeyama fit that skimage's
        replaced, to float64 rounding (1e-9 px)."""
        marks = np.array([[310.2, 240.7], [402.9, 251.3], [351.4, 300.8],
                          [318.6, 352.2], [391.7, 360.5]])
        before = np.array([[1.0502692175794537, 0.047590760340329899,
                            -254.16713941047624],
                           [-0.037934595067276998, 0.83716959333258256,
                            -98.780500687359975]])
        np.testing.assert_allclose(template_transform(marks),
                                   before,
                                   rtol=0,
                                   atol=1e-9)

    def test_bad_input(self):
        with pytest.raises(ValueError, match='same shape'):
            similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
        with pytest.raises(ValueError, match='coincide'):
            similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))

    def test_compose_invert(self):
        a = _similarity(2.0, 30, 1, 2)
        b = _similarity(0.5, -75, -3, 4)
        pts = np.array([[1.0, 2.0], [-3.0, 7.0]])
        np.testing.assert_allclose(
            transform_points(compose(a, b), pts),
            transform_points(a, transform_points(b, pts)))
        np.testing.assert_allclose(compose(a, invert(a)),
                                   np.eye(3)[:2],
                                   atol=1e-9)


class TestBoxCrop:

    def test_box_maps_to_central_region(self):
        mat = box_crop_transform((10.3, 20.7, 110.3, 145.7), 256, 224)
        corners = transform_points(mat, [[10.3, 20.7], [110.3, 145.7]])
        np.testing.assert_allclose(corners, [[16, 16], [240, 240]])
        with pytest.raises(ValueError, match='empty box'):
            box_crop_transform((5, 5, 5, 9), 256, 224)


class TestWarp:

    def test_identity_and_shift(self):
        img = np.random.default_rng(0).integers(0,
                                                255, (40, 50, 3),
                                                dtype=np.uint8)
        np.testing.assert_array_equal(warp_image(img,
                                                 np.eye(3)[:2], (50, 40)), img)
        shifted = warp_image(img, [[1, 0, 5], [0, 1, 0]], (50, 40))
        np.testing.assert_array_equal(shifted[:, 5:], img[:, :45])
        assert (shifted[:, :5] == 0).all()  # black border, as the original

    def test_strong_shrink_is_antialiased(self):
        # a 1-pixel checkerboard shrunk 8x is mid-grey, not aliased
        board = (np.indices((512, 512)).sum(0) % 2 * 255).astype(np.uint8)
        img = np.repeat(board[..., None], 3, axis=2)
        mat = np.float64([[0.125, 0, 0], [0, 0.125, 0]])
        out = warp_image(img, mat, (64, 64))[1:-1, 1:-1]
        plain = cv2.warpAffine(img, mat, (64, 64))  # samples one colour only
        assert np.abs(out.astype(float) - 127.5).max() <= 1
        assert abs(plain.mean() - 127.5) > 100


class TestTemplate:

    def test_template_is_the_wflw_points_under_one_crop_map(self):
        # the documented derivation: template = per-axis scale + shift of
        # the original template's points 96, 97, 54, 76, 82
        pts = DMUE_TEMPLATE.points
        for axis in range(2):
            coef = np.polyfit(WFLW_TEMPLATE_800[:, axis], pts[:, axis], 1)
            fit = np.polyval(coef, WFLW_TEMPLATE_800[:, axis])
            # the template is published rounded to 0.01 px (aspect to
            # 1e-4): residuals <= 0.005 plus the fit's spreading of them
            np.testing.assert_allclose(fit, pts[:, axis], atol=0.02)
            if axis == 0:
                sx = coef[0]
            else:
                assert coef[0] / sx == pytest.approx(DMUE_TEMPLATE.aspect,
                                                     abs=1e-3)
        assert DMUE_TEMPLATE.size == 256 and DMUE_TEMPLATE.inner == 224

    def test_template_transform(self):
        # the squeeze is fixed: a face shaped like the un-squeezed template,
        # at any position, size and rotation, lands exactly on the template
        face = transform_points(
            _similarity(0.5, 20, 30, 60),
            DMUE_TEMPLATE.points / [1, DMUE_TEMPLATE.aspect])
        mat = template_transform(face)
        np.testing.assert_allclose(transform_points(mat, face),
                                   DMUE_TEMPLATE.points,
                                   atol=1e-9)

    def test_bad_template(self):
        with pytest.raises(ValueError, match=r'\(5, 2\)'):
            FaceTemplate(np.zeros((4, 2)))
        with pytest.raises(ValueError, match='inner'):
            FaceTemplate(np.zeros((5, 2)), size=256, inner=300)
