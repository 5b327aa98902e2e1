"""The base dataset configs build their datasets, pipelines and sampler;
a config inheriting the generic base builds a new dataset."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from mmpretrain.registry import DATASETS

from conftest import CONFIGS
from dmue_mm.datasets import LMDBWriter
from dmue_mm.utils import make_pattern_images

BASES = osp.join(CONFIGS, '_base_', 'datasets')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def write_benchmark_lmdb(path, classes, splits, votes=False):
    """Two images per class and split (FERPlus: with votes)."""
    imgs, labels = make_pattern_images(len(classes), 2, size=40, seed=0)
    with LMDBWriter(path, classes) as writer:
        for split in splits:
            for index, (img, label) in enumerate(zip(imgs, labels)):
                extra = None
                if votes:
                    counts = [1] * len(classes)
                    counts[label] = 5
                    extra = {'votes': counts}
                writer.add(split, f'{index}.png', img, int(label), extra)


def load(name, data_root):
    """A base config pointed at ``data_root``, without workers and without
    MMEngine's data serialisation (a full gc.collect(), ~0.4 s a dataset in
    a test process)."""
    cfg = Config.fromfile(osp.join(BASES, f'{name}.py'))
    for loader in LOADERS:
        cfg[loader].dataset.data_root = data_root
        cfg[loader].dataset.serialize_data = False
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    return cfg


def first_batch(dataloader_cfg):
    """The first batch of a dataloader built as the Runner builds it."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return next(iter(Runner.build_dataloader(dataloader_cfg, seed=0)))


class TestBenchmarkConfigs:

    @pytest.mark.parametrize('name,type_,num_classes,splits', [
        ('rafdb', 'RAFDB', 7, ('train', 'test', 'test')),
        ('affectnet7', 'AffectNet7', 7, ('train', 'test', 'test')),
        ('affectnet8', 'AffectNet8', 8, ('train', 'test', 'test')),
        ('ferplus', 'FERPlus', 8, ('train', 'val', 'test')),
        ('sfew', 'SFEW', 7, ('train', 'test', 'test')),
    ])
    def test_builds(self, tmp_path, name, type_, num_classes, splits):
        raw = Config.fromfile(osp.join(BASES, f'{name}.py'))
        assert raw.dataset_type == type_ and raw.num_classes == num_classes
        assert raw.data_root == f'data/{name}/{name}.lmdb'
        assert raw.data_preprocessor == dict(
            num_classes=num_classes,
            mean=[127.5] * 3,
            std=[127.5] * 3,
            to_rgb=True)
        train = raw.train_dataloader
        assert (train.batch_size, train.num_workers) == (72, 4)
        assert train.sampler.type == 'ClassBalancedSampler'
        assert raw.val_dataloader.batch_size == 16
        assert raw.test_dataloader.batch_size == 16
        assert raw.val_evaluator.type == 'Accuracy'
        assert [t.type for t in train.dataset.pipeline] == [
            'GaussianPixelNoise', 'Resize', 'RandomCrop', 'RandomFlip',
            'TorchvisionRandomErasing', 'PackInputs'
        ]
        assert [t.type for t in raw.test_dataloader.dataset.pipeline
                ] == ['Resize', 'CenterCrop', 'PackInputs']

        path = str(tmp_path / f'{name}.lmdb')
        classes = DATASETS.get(type_).METAINFO['classes']
        write_benchmark_lmdb(
            path, classes, set(splits), votes=name == 'ferplus')
        cfg = load(name, path)
        for loader, split in zip(LOADERS, splits):
            dataset = DATASETS.build(cfg[loader].dataset)
            assert dataset.split == split and dataset.CLASSES == classes
            assert type(dataset).__name__ == type_
        cfg.train_dataloader.batch_size = 8  # an epoch has len(dataset)
        batch = first_batch(cfg.train_dataloader)
        assert len(batch['inputs']) == 8
        assert batch['inputs'][0].shape == (3, 224, 224)
        assert batch['inputs'][0].dtype == torch.float32
        assert all('gt_score' not in s for s in batch['data_samples'])
        test = first_batch(cfg.test_dataloader)
        assert test['inputs'][0].shape == (3, 224, 224)
        assert test['inputs'][0].dtype == torch.uint8
        if name == 'ferplus':  # evaluation samples carry the vote scores
            score = test['data_samples'][0].gt_score
            # 8 float32 quotients (<= eps/2 each) and their 8-term sum
            # (<= 7 eps/2): within 4 eps of 1
            assert score.sum().item() == pytest.approx(
                1.0, abs=8 * torch.finfo(torch.float32).eps)


class TestInheritedConfig:

    def test_new_dataset(self, tmp_path):
        path = str(tmp_path / 'mine.lmdb')
        write_benchmark_lmdb(path, ('calm', 'tense', 'happy'),
                             ('train', 'test'))
        config = tmp_path / 'mine.py'
        config.write_text(f"""
_base_ = [{osp.join(BASES, 'expression_lmdb.py')!r}]
data_root = {path!r}
classes = ('calm', 'tense', 'happy')
num_classes = len(classes)
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    batch_size=8, dataset=dict(data_root=data_root, classes=classes))
val_dataloader = dict(dataset=dict(data_root=data_root, classes=classes))
test_dataloader = val_dataloader
""")
        cfg = Config.fromfile(str(config))
        assert cfg.data_preprocessor.num_classes == 3
        assert cfg.train_dataloader.sampler.type == 'ClassBalancedSampler'
        train = DATASETS.build(cfg.train_dataloader.dataset)
        test = DATASETS.build(cfg.test_dataloader.dataset)
        assert type(train).__name__ == 'ExpressionLMDBDataset'
        assert train.CLASSES == test.CLASSES == ('calm', 'tense', 'happy')
        assert (train.split, test.split) == ('train', 'test')
        assert len(train) == len(test) == 6
        np.testing.assert_array_equal(train.get_gt_labels(),
                                      [0, 0, 1, 1, 2, 2])
        assert train[0]['inputs'].shape == (3, 224, 224)
