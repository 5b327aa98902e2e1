# Pipeline demo on a PROXY dataset, not expression data: scikit-learn's
# handwritten digits (1,797 8x8 images that ship inside scikit-learn),
# upscaled to 16x16 RGB and packed into the plugin's LMDB format by
# tools/demo.py, with symmetric label noise on the training split.
# DMUE (10 auxiliary branches) on a small CIFAR-style ResNet-18 trained from
# scratch, pruned to a plain classifier by BranchPruningHook at the end.
_base_ = [
    '../_base_/datasets/expression_lmdb.py',
    '../_base_/default_runtime.py',
]

data_root = 'work_dirs/demo/digits_proxy.lmdb'
num_classes = 10
epochs = 24

data_preprocessor = dict(num_classes=num_classes)
# digits must not be flipped; a 2-pixel shift is the only augmentation
train_pipeline = [
    dict(type='RandomCrop', crop_size=16, padding=2),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='ExpressionMetric')
test_evaluator = val_evaluator

model = dict(
    type='DMUEClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        stem_channels=16,
        base_channels=16,
        out_indices=(3, )),
    head=dict(
        type='DMUEHead',
        num_classes=num_classes,
        # 128-d features: gamma * L_sp is about 0.1 at the start (the rule of
        # docs/head.md for small models), not the ResNet-18/224 value 1000
        loss=dict(type='DMUELoss', sp_weight=10.0, ramp_a=epochs // 5)),
    data_preprocessor=data_preprocessor,
)

optim_wrapper = dict(
    optimizer=dict(type='Adam', lr=2e-3, weight_decay=1e-4))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=epochs)
train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=6)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=6, max_keep_ckpts=1, save_best='auto'))
custom_hooks = [dict(type='BranchPruningHook', test_data='plugin')]
randomness = dict(seed=0)
