"""Robust reading: modes, bit depths, EXIF rotation, broken files."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from dmue_mm.alignment import ImageReadError, load_rgb
from dmue_mm.utils.fileio import write_bytes


def _gradient(h=20, w=30):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 8, y * 12, (x + y) * 4], -1).astype(np.uint8)


class TestLoadRGB:

    @pytest.mark.parametrize('mode', ['L', 'RGBA', 'LA', 'P', 'CMYK', '1'])
    def test_modes_become_rgb(self, tmp_path, mode):
        img = Image.fromarray(_gradient()).convert(mode)
        path = str(tmp_path / ('x.jpg' if mode == 'CMYK' else 'x.png'))
        img.save(path)
        rgb = load_rgb(path)
        assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
        if mode == 'L':
            assert (rgb[..., 0] == rgb[..., 1]).all()
            np.testing.assert_array_equal(rgb[..., 0], np.asarray(img))
        if mode == 'RGBA':  # alpha dropped, colour kept
            np.testing.assert_array_equal(rgb, _gradient())

    def test_palette_with_transparency(self, tmp_path):
        img = Image.fromarray(_gradient()).convert('P')
        img.info['transparency'] = 0
        img.save(tmp_path / 'p.png', transparency=0)
        assert load_rgb(str(tmp_path / 'p.png')).shape == (20, 30, 3)

    def test_16bit_grey_is_rescaled_not_clipped(self, tmp_path):
        grey = np.array([[0, 257, 32896, 65535]], np.uint16)
        Image.fromarray(grey).save(tmp_path / 'g16.png')
        rgb = load_rgb(str(tmp_path / 'g16.png'))
        np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])

    def test_16bit_colour(self, tmp_path):
        bgr = np.zeros((4, 5, 3), np.uint16)
        bgr[...] = (65535, 32896, 2570)
        for ext in ('png', 'tif'):
            cv2.imwrite(str(tmp_path / f'c16.{ext}'), bgr)
            rgb = load_rgb(str(tmp_path / f'c16.{ext}'))
            np.testing.assert_array_equal(rgb[0, 0], [10, 128, 255])

    def test_float_image(self, tmp_path):
        Image.fromarray(np.full((4, 4), 0.5,
                                np.float32)).save(tmp_path / 'f.tif')
        rgb = load_rgb(str(tmp_path / 'f.tif'))
        assert (rgb == 128).all()

    def test_exif_rotation(self, tmp_path):
        img = Image.fromarray(_gradient(20, 30))
        exif = Image.Exif()
        exif[0x0112] = 6  # display rotated 90 degrees clockwise
        img.save(tmp_path / 'r.jpg', exif=exif, quality=100)
        rgb = load_rgb(str(tmp_path / 'r.jpg'))
        assert rgb.shape == (30, 20, 3)
        # the top-left of the upright image is the bottom-left of the stored
        # one: the same Pillow decode, rotated (a permutation: exact)
        stored = np.asarray(Image.open(tmp_path / 'r.jpg'))
        np.testing.assert_array_equal(rgb, np.rot90(stored, -1))
        np.testing.assert_array_equal(rgb[0, 0], stored[-1, 0])

    def test_truncated_and_garbage(self, tmp_path):
        Image.fromarray(_gradient(200, 200)).save(tmp_path / 'ok.jpg')
        Image.fromarray(_gradient(200, 200)).save(tmp_path / 'ok.png')
        for name in ('ok.jpg', 'ok.png'):
            data = (tmp_path / name).read_bytes()
            (tmp_path / f'cut_{name}').write_bytes(data[:len(data) // 3])
            with pytest.raises(ImageReadError, match='corrupt'):
                load_rgb(str(tmp_path / f'cut_{name}'))
        (tmp_path / 'junk.jpg').write_bytes(b'not an image at all')
        with pytest.raises(ImageReadError, match='corrupt'):
            load_rgb(str(tmp_path / 'junk.jpg'))
        with pytest.raises(ImageReadError, match='missing file'):
            load_rgb(str(tmp_path / 'nope.jpg'))


class TestWriteAtomic:

    def test_write_and_no_leftovers(self, tmp_path):
        path = tmp_path / 'a' / 'b.bin'
        write_bytes(str(path), b'123')
        write_bytes(str(path), b'4567')
        assert path.read_bytes() == b'4567'
        assert os.listdir(tmp_path / 'a') == ['b.bin']
