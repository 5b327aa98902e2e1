"""LMDB expression datasets, the packers, class-balanced sampling and the
FER transforms of the DMUE recipe."""
from .class_count import (check_class_names, check_head_classes,
                          dataset_class_counts, head_num_classes)
from .fer_benchmarks import (AFFECTNET7_CLASSES, AFFECTNET8_CLASSES,
                             FERPLUS_CLASSES, RAFDB, RAFDB_CLASSES,
                             SFEW_CLASSES, SFEW, AffectNet7, AffectNet8,
                             BenchmarkDataset, FERPlus)
from .lmdb_dataset import ExpressionLMDBDataset, LMDBImageDataset
from .lmdb_io import (ImageDecodeError, LMDBReader, LMDBWriter,
                      MissingKeyError, close_lmdb, decode_image, encode_image,
                      open_lmdb, read_lmdb_metadata, shared_lmdb)
from .original_lmdb import OriginalLMDBDataset, parse_original_list
from .packers import (Layout, PackItem, PackSummary, affectnet_layout,
                      ferplus_layout, folder_layout, list_layout,
                      original_layout, pack_layout, rafdb_layout)
from .samplers import ClassBalancedSampler
from .transforms import GaussianPixelNoise, TorchvisionRandomErasing

__all__ = [
    'AFFECTNET7_CLASSES', 'AFFECTNET8_CLASSES', 'FERPLUS_CLASSES',
    'RAFDB_CLASSES', 'SFEW_CLASSES', 'RAFDB', 'AffectNet7', 'AffectNet8',
    'FERPlus', 'SFEW', 'BenchmarkDataset', 'ExpressionLMDBDataset',
    'LMDBImageDataset',
    'ImageDecodeError', 'MissingKeyError', 'LMDBReader', 'LMDBWriter',
    'close_lmdb', 'decode_image', 'encode_image', 'open_lmdb', 'shared_lmdb',
    'read_lmdb_metadata', 'OriginalLMDBDataset', 'parse_original_list',
    'Layout', 'PackItem', 'PackSummary', 'pack_layout', 'rafdb_layout',
    'affectnet_layout', 'ferplus_layout', 'folder_layout', 'list_layout',
    'original_layout', 'ClassBalancedSampler', 'GaussianPixelNoise',
    'TorchvisionRandomErasing', 'check_class_names', 'check_head_classes',
    'dataset_class_counts', 'head_num_classes'
]
