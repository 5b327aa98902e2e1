# Generic base for an expression dataset packed with tools/pack_lmdb.py, with
# the DMUE recipe's pipelines (docs/datasets.md). A new dataset inherits it
# and sets its LMDB, classes and class count (docs/datasets.md shows a full
# example):
#
#   _base_ = ['../_base_/datasets/expression_lmdb.py']
#   data_root = 'data/mine/mine.lmdb'
#   num_classes = 3
#   data_preprocessor = dict(num_classes=num_classes)
#   train_dataloader = dict(dataset=dict(data_root=data_root))
#   val_dataloader = dict(dataset=dict(data_root=data_root))
#   test_dataloader = val_dataloader
#
# Images are decoded by the dataset (BGR uint8, as LoadImageFromFile gives),
# so the pipelines have no loading step. They are stored at 256x256 (the
# resize is a no-op then, as in the original).
dataset_type = 'ExpressionLMDBDataset'
data_root = 'data/expression/expression.lmdb'
num_classes = None  # set it: the number of classes of the dataset

data_preprocessor = dict(
    num_classes=num_classes,
    # Normalize(0.5, 0.5) on [0, 1] RGB == (x - 127.5) / 127.5 on [0, 255]
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True,
)

train_pipeline = [
    # 1. Gaussian noise, variance 30, with probability 0.25, on uint8
    dict(type='GaussianPixelNoise', prob=0.25, var=30.0),
    # 2. torchvision's Resize((256, 256)) on PIL images: PIL bilinear
    dict(type='Resize', scale=(256, 256), keep_ratio=False, backend='pillow',
         interpolation='bilinear'),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # torchvision RandomErasing(p=0.5, scale=(0.02, 0.25), ratio=(0.3, 3.3),
    # value=0) after Normalize: value 127.5 here is 0 after normalisation
    dict(type='TorchvisionRandomErasing', prob=0.5, scale=(0.02, 0.25),
         ratio=(0.3, 3.3), value=127.5),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='Resize', scale=(256, 256), keep_ratio=False, backend='pillow',
         interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# Batch 72 and 4 workers as the original. The DMUE recipes set
# total_batch_size = 72, which tools/train.py splits over k processes
# (72 / k each); a config without it trains batch_size per process.
train_dataloader = dict(
    batch_size=72,
    num_workers=4,
    pin_memory=True,
    persistent_workers=True,
    sampler=dict(type='ClassBalancedSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
)
# As the original, the "val" set is the benchmark's test split.
val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='test',
        test_mode=True,
        pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
