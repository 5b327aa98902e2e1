"""Tiny fakes of the benchmarks' official release layouts, and LMDB helpers.

Each builder writes a few generated images in exactly the layout of the
official release (the table in ``docs/datasets.md``) and returns what a correct
packer must read back: ``{split: {key: (label, image)}}`` with ``image`` the
BGR array that OpenCV decodes from the source (or the source array for
in-memory data).
"""
import csv
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import lmdb
import numpy as np

from dmue_mm.datasets import LMDBWriter, shared_lmdb
from dmue_mm.utils import make_pattern_images

Expected = Dict[str, Dict[str, Tuple[int, np.ndarray]]]

CLASSES = ('angry', 'happy', 'neutral', 'sad')


def write_lmdb(path: str,
               classes=CLASSES,
               splits: Dict[str, int] = None,
               size: int = 20,
               **kwargs) -> Dict[str, List[Tuple[str, int, np.ndarray]]]:
    """Write a PNG LMDB of generated RGB images; return
    ``{split: [(key, label, rgb), ...]}``."""
    splits = splits or {'train': 3, 'test': 2}
    num_classes = classes if isinstance(classes, int) else len(classes)
    written = {}
    with LMDBWriter(path, classes, **kwargs) as writer:
        for offset, (split, per_class) in enumerate(splits.items()):
            imgs, labels = make_pattern_images(
                num_classes, per_class, size=size, seed=offset)
            written[split] = []
            for index, (img, label) in enumerate(zip(imgs, labels)):
                key = f'c{label}/{index:03d}.png'
                writer.add(split, key, img, int(label), extra={'index': index})
                written[split].append((key, int(label), img))
    return written


def lmdb_entries(path: str) -> Dict[bytes, bytes]:
    """Every key and value of an LMDB."""
    with shared_lmdb(path).begin() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor()}


def write_image(path: str, rgb: np.ndarray) -> np.ndarray:
    """Write an RGB image (format from the extension); return the BGR image
    OpenCV reads back from the file."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return cv2.imread(path, cv2.IMREAD_COLOR)


def images(num_classes: int,
           per_class: int,
           seed: int,
           size: int = 24) -> List[Tuple[int, np.ndarray]]:
    imgs, labels = make_pattern_images(num_classes, per_class, size, seed)
    return [(int(label), img) for img, label in zip(imgs, labels)]


def make_rafdb(root: str) -> Expected:
    """``basic/EmoLabel/list_patition_label.txt`` (1-based labels) and
    ``basic/Image/aligned/<stem>_aligned.jpg``."""
    base = osp.join(root, 'basic')
    expected: Expected = {'train': {}, 'test': {}}
    lines = []
    for split, per_class, seed in (('train', 2, 1), ('test', 1, 2)):
        for index, (label, img) in enumerate(images(7, per_class, seed)):
            name = f'{split}_{index + 1:05d}.jpg'
            path = osp.join(base, 'Image', 'aligned',
                            f'{split}_{index + 1:05d}_aligned.jpg')
            expected[split][name] = (label, write_image(path, img))
            lines.append(f'{name} {label + 1}\n')
    os.makedirs(osp.join(base, 'EmoLabel'))
    with open(osp.join(base, 'EmoLabel', 'list_patition_label.txt'), 'w') as f:
        f.writelines(lines)
    return expected


AFFECTNET_HEADER = [
    'subDirectory_filePath', 'face_x', 'face_y', 'face_width', 'face_height',
    'facial_landmarks', 'expression', 'valence', 'arousal'
]


def make_affectnet(root: str) -> Tuple[Expected, Dict[str, int]]:
    """``Manually_Annotated_file_lists/{training,validation}.csv`` (the
    validation file without header, as in some releases) with codes 0-10,
    a missing image and an undecodable one.

    Returns:
        tuple: expected samples for 8 classes, and ``{'missing': path,
        'corrupt': path}`` counts of broken files per split in ``train``.
    """
    expected: Expected = {'train': {}, 'test': {}}
    lists = osp.join(root, 'Manually_Annotated_file_lists')
    os.makedirs(lists)
    for split, name, seed in (('train', 'training.csv', 3),
                              ('test', 'validation.csv', 4)):
        rows = []
        for index, (code, img) in enumerate(images(11, 1, seed)):
            rel = f'{index % 3}/{split}{index:03d}.jpg'
            path = osp.join(root, 'Manually_Annotated_Images', rel)
            decoded = write_image(path, img)
            if code < 8:
                expected[split][rel] = (code, decoded)
            rows.append([rel, 0, 0, 24, 24, '1.0;2.0', code, 0.1, -0.2])
        if split == 'train':
            rows.append(['9/missing.jpg', 0, 0, 1, 1, '', 1, 0, 0])
            corrupt = osp.join(root, 'Manually_Annotated_Images', '9',
                               'corrupt.jpg')
            os.makedirs(osp.dirname(corrupt))
            with open(corrupt, 'wb') as f:
                f.write(b'\xff\xd8\xff not really a jpeg')
            rows.append(['9/corrupt.jpg', 0, 0, 1, 1, '', 2, 0, 0])
        with open(osp.join(lists, name), 'w', newline='') as f:
            writer = csv.writer(f)
            if split == 'train':
                writer.writerow(AFFECTNET_HEADER)
            writer.writerows(rows)
    return expected, {'unreadable': 2}


FER_VOTE_COLUMNS = [
    'neutral', 'happiness', 'surprise', 'sadness', 'anger', 'disgust', 'fear',
    'contempt', 'unknown', 'NF'
]


def make_ferplus(root: str) -> Tuple[Expected, Dict[str, list], dict]:
    """``fer2013.csv`` + ``fer2013new.csv`` with majority, tied,
    unknown-majority and NF-majority votes, a row without image name and a
    row with broken pixels.

    Returns:
        tuple: expected samples (grey images as BGR), the votes of each
        kept key, and the expected dropped counts per split.
    """
    rng = np.random.default_rng(5)
    old_rows, new_rows = [], []
    expected: Expected = {'train': {}, 'val': {}, 'test': {}}
    votes_of = {}
    usages = [('Training', 'train'), ('PublicTest', 'val'),
              ('PrivateTest', 'test')]
    specials = {
        0: [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # tie -> dropped
        1: [2, 0, 0, 0, 0, 0, 0, 0, 6, 2],  # unknown majority -> dropped
        2: [0, 0, 0, 0, 1, 0, 0, 0, 0, 9],  # not a face -> dropped
    }
    dropped = {
        'train': {
            'tie': 1,
            'unknown/NF majority': 2,
            'no image name': 1
        },
        'val': {},
        'test': {}
    }
    index = 0
    for usage, split in usages:
        for label in range(8):
            grey = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            votes = [int(v) for v in rng.integers(0, 2, 10)]
            votes[8] = votes[9] = 0
            votes[label] = 7
            name = f'fer{index:07d}.png'
            if split == 'train' and label in specials:
                votes = specials[label]
            elif split == 'train' and label == 3:
                name = ''  # no image for this row
            else:
                expected[split][name] = (label,
                                         cv2.cvtColor(grey,
                                                      cv2.COLOR_GRAY2BGR))
                votes_of[name] = votes
            old_rows.append([label, ' '.join(map(str, grey.ravel())), usage])
            new_rows.append([usage, name] + votes)
            index += 1
    # a row whose pixel string is broken: reported as unreadable
    old_rows.append([0, '1 2 3', 'Training'])
    new_rows.append(
        ['Training', f'fer{index:07d}.png', 9, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    with open(osp.join(root, 'fer2013.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['emotion', 'pixels', 'Usage'])
        writer.writerows(old_rows)
    with open(osp.join(root, 'fer2013new.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['Usage', 'Image name'] + FER_VOTE_COLUMNS)
        writer.writerows(new_rows)
    return expected, votes_of, dropped


SFEW_FOLDERS = ('Angry', 'Disgust', 'Fear', 'Happy', 'Neutral', 'Sad',
                'Surprise')


def make_folder_tree(root: str,
                     classes: Sequence[str] = SFEW_FOLDERS,
                     splits: Dict[str, str] = None) -> Expected:
    """``<Split>/<Class>/<image>.png`` (SFEW: Train, Val) plus a stray
    non-image file."""
    splits = splits or {'Train': 'train', 'Val': 'test'}
    expected: Expected = {name: {} for name in splits.values()}
    for offset, (folder, split) in enumerate(splits.items()):
        for index, (label,
                    img) in enumerate(images(len(classes), 2, 10 + offset)):
            key = f'{classes[label]}/{folder.lower()}_{index:03d}.png'
            decoded = write_image(osp.join(root, folder, key), img)
            expected[split][key] = (label, decoded)
    first = next(iter(splits))
    with open(osp.join(root, first, classes[0], 'notes.txt'), 'w') as f:
        f.write('not an image')
    return expected


def make_list_layout(root: str,
                     num_classes: int = 3) -> Tuple[Expected, Dict[str, str]]:
    """Images under ``root/images`` (a path with a space) and one
    ``<path> <label>`` list per split."""
    expected: Expected = {'train': {}, 'test': {}}
    lists = {}
    for split, seed in (('train', 20), ('test', 21)):
        lines = []
        for index, (label, img) in enumerate(images(num_classes, 2, seed)):
            rel = f'{split}/sub dir/img_{index}.png'
            decoded = write_image(osp.join(root, 'images', rel), img)
            expected[split][rel] = (label, decoded)
            lines.append(f'{rel} {label}\n')
        lists[split] = osp.join(root, f'{split}.txt')
        with open(lists[split], 'w') as f:
            f.writelines(lines)
    return expected, lists


def make_original(root: str,
                  num_classes: int = 8,
                  size: int = 256) -> Tuple[Expected, str, str]:
    """An original DMUE LMDB (raw RGB values, keys ``<split>_<path>``) and
    its list file; the paths contain ``_``, which the original parser could
    not split.

    Returns:
        tuple: expected samples (BGR), the LMDB path, the list path.
    """
    path = osp.join(root, 'original_lmdb')
    list_path = osp.join(root, 'lb2.txt')
    os.makedirs(root, exist_ok=True)
    env = lmdb.open(path, map_size=64 << 20)
    expected: Expected = {'train': {}, 'test': {}}
    lines = []
    with env.begin(write=True) as txn:
        for split, seed in (('train', 30), ('test', 31)):
            for index, (label, rgb) in enumerate(
                    images(num_classes, 1, seed, size=size)):
                rel = f'folder_{label}/img_{index}.jpg'
                key = f'{split}_{rel}'
                txn.put(key.encode(), rgb.tobytes())
                expected[split][rel] = (label, rgb[..., ::-1].copy())
                lines.append(f'{key} {label}\n')
    env.close()
    with open(list_path, 'w') as f:
        f.writelines(lines)
    return expected, path, list_path
