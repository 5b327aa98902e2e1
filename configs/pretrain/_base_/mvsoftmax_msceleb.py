# Face-recognition pretraining with MV-Softmax on an identity dataset
# (MS-Celeb-1M in the DMUE paper, docs/pretrain.md). The recipes
# faceres18_mvsoftmax_msceleb.py and r50ibn_mvsoftmax_msceleb.py add the model.
#
# Data: face crops under data_root/data_prefix and a list file
# data_root/ann_file with one `relpath identity` line per image (identities
# 0..num_classes-1), the format of the original gen_train_file.py.
_base_ = ['../../_base_/default_runtime.py']

dataset_type = 'CustomDataset'
data_root = 'data/msceleb'
num_classes = 86876  # identities of the cleaned MS-Celeb-1M list

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.5, 127.5, 127.5],  # Normalize(0.5, 0.5) on [0, 1] images
    std=[127.5, 127.5, 127.5],
    to_rgb=True,
)

# The original transforms: Resize((256, 256)) -> RandomCrop(224) -> flip.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256)),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,  # per GPU; set by each recipe
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train_list.txt',
        data_prefix='images',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
# The original validates nothing during pretraining (face verification
# benchmarks are outside this project), so neither does this recipe.

# SGD 0.1, momentum 0.9, wd 1e-4; x0.1 at epochs 10, 13, 16; 18 epochs.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[10, 13, 16], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=18)

default_hooks = dict(logger=dict(interval=200))
