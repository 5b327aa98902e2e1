"""The class count of a dataset config, read without building the dataset,
and the check against ``model.head.num_classes``."""
import pytest
from mmengine.config import Config

from dmue_mm.datasets import (AffectNet8, check_class_names,
                              check_head_classes, dataset_class_counts)
from dmue_mm.utils import DataError, write_image_folder
from .fakes import write_lmdb


def run_cfg(num_classes, dataset, field='train_dataloader', tta=False):
    model = dict(type='ImageClassifier',
                 head=dict(type='LinearClsHead', num_classes=num_classes))
    if tta:
        model = dict(type='AverageClsScoreTTA', module=model)
    return Config({'model': model, field: dict(dataset=dataset)})


class TestDatasetClassCounts:

    def test_lmdb_metadata(self, tmp_path):
        path = str(tmp_path / 'eight.lmdb')
        write_lmdb(path, classes=tuple(f'c{i}' for i in range(8)),
                   splits={'test': 1})
        counts = dataset_class_counts(
            dict(type='ExpressionLMDBDataset', data_root=path))
        assert counts == [(8, f"the metadata of LMDB {path!r}")]

    def test_config_classes_then_data(self, tmp_path):
        write_image_folder(str(tmp_path), list('abc'), {'val': 1}, size=8)
        dataset = dict(type='CustomDataset', data_root=str(tmp_path),
                       data_prefix='val', classes=list('abcde'))
        assert [c for c, _ in dataset_class_counts(dataset)] == [5, 3]

    def test_benchmark_type_and_wrapper(self):
        dataset = dict(type='ClassBalancedDataset', oversample_thr=0.1,
                       dataset=dict(type='AffectNet8', data_root='missing'))
        assert dataset_class_counts(dataset) == [(8,
                                                  'the classes of AffectNet8')]

    def test_nothing_known(self):
        assert dataset_class_counts(
            dict(type='CustomDataset', data_root='missing')) == []


class TestCheckHeadClasses:

    def test_lmdb_with_more_classes_than_the_head(self, tmp_path):
        """An 8-class LMDB read by a 7-class config that names no classes
        (crashed at the first step before)."""
        path = str(tmp_path / 'eight.lmdb')
        write_lmdb(path, classes=tuple(f'c{i}' for i in range(8)),
                   splits={'test': 1})
        cfg = run_cfg(7, dict(type='ExpressionLMDBDataset', data_root=path),
                      field='val_dataloader', tta=True)
        with pytest.raises(DataError) as exc:
            check_head_classes(cfg)
        message = str(exc.value)
        assert message.startswith('model.head.num_classes is 7 but '
                                  'val_dataloader.dataset has 8 classes')
        assert path in message and 'model.head.num_classes=8' in message

    def test_own_classes_but_the_recipe_head(self):
        cfg = run_cfg(8, dict(type='ExpressionLMDBDataset',
                              data_root='missing', classes=list('abcde')))
        with pytest.raises(DataError, match=r'is 8 but train_dataloader\.'
                           r'dataset has 5 classes \(`classes` in'):
            check_head_classes(cfg)

    def test_agreeing_counts_and_unchecked_fields_pass(self, tmp_path):
        write_image_folder(str(tmp_path), list('abcd'), {'val': 1}, size=8)
        folder = dict(type='CustomDataset', data_root=str(tmp_path),
                      data_prefix='val')
        check_head_classes(run_cfg(4, folder))
        check_head_classes(run_cfg(3, folder), fields=('test_dataloader', ))


def test_benchmark_refuses_classes_of_another_length():
    with pytest.raises(DataError) as exc:
        AffectNet8(data_root='missing.lmdb', classes=list('abcde'))
    message = str(exc.value)
    assert 'AffectNet8 has 8 classes' in message
    assert "`classes` lists 5" in message


def test_class_names_against_the_model():
    check_class_names(3, None, 'x')
    check_class_names(3, list('abc'), 'x')
    with pytest.raises(DataError, match=r'has 3 classes but ckpt\.pth names '
                       r'2 \(a, b\)'):
        check_class_names(3, list('ab'), 'ckpt.pth')
