"""ExpressionInferencer: images and folders in, class probabilities with
names out (optionally after face alignment)."""
import csv
import glob
import json
import os.path as osp

import cv2
import matplotlib
import numpy as np
import pytest
import torch
from conftest import CLASSES
from dmue_testing import EPS32, sum_atol

from dmue_mm.apis import (ExpressionInferencer, predictions_table,
                          write_predictions)
from dmue_mm.utils.numerics import network_size
from test_converters.deploy_helpers import deploy_model, folder_deploy

pytestmark = pytest.mark.numeric

GRACE_HOPPER = osp.join(matplotlib.get_data_path(), 'sample_data',
                        'grace_hopper.jpg')


@pytest.fixture(scope='module')
def deploy_files(tmp_path_factory):
    return folder_deploy(str(tmp_path_factory.mktemp('deploy')))


@pytest.fixture(scope='module')
def inferencer(deploy_files):
    return ExpressionInferencer(deploy_files.config, deploy_files.checkpoint)


def reference_logits(deploy_files, paths):
    """Logits of the deploy model on images normalised by hand."""
    model = deploy_model(deploy_files.config, deploy_files.checkpoint)
    batch = np.stack([cv2.imread(p)[..., ::-1] for p in paths])
    x = (torch.from_numpy(batch.copy()).permute(0, 3, 1, 2).float() -
         127.5) / 127.5
    with torch.no_grad():
        return model(x, mode='tensor')


class TestExpressionInferencer:

    def test_folder_in_sorted_order_with_class_names(self, inferencer,
                                                     deploy_files,
                                                     image_folder):
        folder = osp.join(image_folder, 'val')
        preds = inferencer(folder, batch_size=3)
        paths = sorted(glob.glob(osp.join(folder, '*', '*.png')))
        assert [p.image for p in preds] == paths
        assert inferencer.classes == list(CLASSES)
        logits = reference_logits(deploy_files, paths)
        expected = torch.softmax(logits, 1)
        scores = torch.tensor([[p.scores[c] for c in CLASSES] for p in preds])
        # the inferencer normalises and batches on its own, so every
        # conv/linear layer of the tiny ResNet-18 may round in another
        # order; probabilities move by <= half the logit change (the softmax
        # Jacobian's rows sum to 2 p (1 - p) <= 1/2)
        layers, fan_in = network_size(inferencer.inferencer.model)
        atol = sum_atol(logits, fan_in, layers) / 2
        torch.testing.assert_close(scores.float(), expected, atol=atol, rtol=0)
        for pred, row in zip(preds, expected):
            assert pred.pred_label == int(row.argmax())
            assert pred.pred_class == CLASSES[pred.pred_label]
            assert pred.pred_score == pytest.approx(float(row.max()), abs=atol)

    def test_unreadable_image_gets_an_error_entry(self, inferencer,
                                                  image_folder, tmp_path):
        bad = tmp_path / 'broken.png'
        bad.write_bytes(b'not an image')
        good = sorted(glob.glob(osp.join(image_folder, 'val', '*',
                                         '*.png')))[0]
        preds = inferencer([str(bad), good])
        assert preds[0].error.startswith('unreadable image')
        assert preds[0].scores == {} and preds[1].error is None
        table = predictions_table(preds, inferencer.classes)
        assert table.splitlines()[0].split()[:3] == ['image', 'class', 'p']
        assert '(unreadable image' in table

    def test_json_and_csv_outputs(self, inferencer, image_folder, tmp_path):
        preds = inferencer(osp.join(image_folder, 'val', 'happy'))
        write_predictions(preds, inferencer.classes, str(tmp_path / 'p.json'))
        write_predictions(preds, inferencer.classes, str(tmp_path / 'p.csv'))
        with open(tmp_path / 'p.json') as f:
            assert json.load(f) == [p.to_dict() for p in preds]
        with open(tmp_path / 'p.csv') as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(preds)
        # csv writes str(float), the shortest repr: the same double back
        assert float(rows[0]['happy']) == preds[0].scores['happy']

    def test_align_finds_the_face_of_a_real_photo(self, inferencer):
        inferencer.align = True
        try:
            blank = np.full((120, 120, 3), 128, np.uint8)
            preds = inferencer([GRACE_HOPPER, blank])
        finally:
            inferencer.align = False
        assert preds[0].error is None
        # 4 float32 probabilities of <= 8 eps relative error each
        assert sum(preds[0].scores.values()) == pytest.approx(
            1.0, abs=4 * 8 * EPS32)
        assert preds[1].image == 'array_1'
        assert preds[1].error == 'no face found'
