"""Helpers shared by the model, engine, converter, hook and API tests (tiny
models, quiet init, samples, one torch thread)."""
import copy
import logging
from typing import Sequence

import pytest
import torch
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import dmue_mm  # noqa: F401  registers the plugin
from dmue_mm.utils.numerics import FLOAT32_EPS, float32_sum_tolerance

#: float32 machine epsilon, 2**-23 (the unit roundoff is half of it).
EPS32 = FLOAT32_EPS


def sum_atol(expected: torch.Tensor,
             terms: int,
             layers: int = 1,
             conditioning: float = 4.0) -> float:
    """:func:`dmue_mm.utils.numerics.float32_sum_tolerance` relative to the
    largest ``|expected|``: the tolerance between two float32 evaluations
    of ``expected`` whose ``layers`` layers (at most ``terms`` products per
    sum) may sum in another order."""
    return float32_sum_tolerance(
        float(expected.detach().abs().max()), terms, layers, conditioning)


#: float32 machine epsilon (2^-23): tolerances are multiples of it
EPS = torch.finfo(torch.float32).eps

TINY_RESNET = dict(
    type='ResNet', depth=18, base_channels=8, stem_channels=8,
    out_indices=(3, ))


def tiny_dmue(num_classes: int = 4, backbone: dict = TINY_RESNET, **head):
    """A DMUEClassifier with a narrow ResNet-18 (64-d features)."""
    model = MODELS.build(
        dict(
            type='DMUEClassifier',
            backbone=copy.deepcopy(backbone),
            head=dict(type='DMUEHead', num_classes=num_classes, **head)))
    quiet_init(model)
    return model


def quiet_init(model) -> None:
    """``init_weights`` without MMEngine's per-parameter report."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def samples(labels: Sequence[int]):
    """Data samples carrying hard labels."""
    return [DataSample().set_gt_label(int(y)) for y in labels]


def loss_total(losses: dict) -> torch.Tensor:
    """The sum MMEngine's ``parse_losses`` optimises."""
    return sum(v for k, v in losses.items() if 'loss' in k)


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """One torch thread: the test machine is shared and oversubscribed
    threads spin; restores the previous setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_test_video(path: str, fps: float = 10.0) -> list:
    """A 2.5 s MJPG video (OpenCV's own encoder) of the real photos that
    ship in the wheels: 10 frames of Grace Hopper, 5 blank grey frames (no
    face), 10 of the astronaut, 200x224 at ``fps``.

    Returns:
        list[str]: What each frame shows (``hopper``, ``blank``,
        ``astronaut``).
    """
    import cv2
    import numpy as np

    from dmue_mm.alignment import sample_photos
    photos = sample_photos()
    size = (200, 224)
    shown = ['hopper'] * 10 + ['blank'] * 5 + ['astronaut'] * 10
    images = dict(
        hopper=cv2.resize(photos['grace_hopper'], size,
                          interpolation=cv2.INTER_AREA),
        blank=np.full((size[1], size[0], 3), 128, np.uint8),
        astronaut=cv2.resize(photos['astronaut'], size,
                             interpolation=cv2.INTER_AREA))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), fps,
                             size)
    assert writer.isOpened(), 'OpenCV cannot write MJPG'
    for name in shown:
        writer.write(cv2.cvtColor(images[name], cv2.COLOR_RGB2BGR))
    writer.release()
    return shown


def save_untrained_checkpoint(config: str, path: str,
                              num_classes: int) -> str:
    """Save an untrained model of ``config`` with ``num_classes`` classes as
    a checkpoint (cheaper than training when only the tools' plumbing is
    tested)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import save_checkpoint
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(config)
    cfg.model.head.num_classes = num_classes
    torch.manual_seed(0)
    save_checkpoint(
        dict(state_dict=MODELS.build(cfg.model).state_dict(), meta={}), path)
    return path
