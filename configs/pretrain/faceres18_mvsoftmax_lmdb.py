# The face-stem ResNet-18 MV-Softmax pretraining recipe (docs/pretrain.md) over
# an identity LMDB in the plugin's format instead of a `relpath identity` list,
# e.g. the crops written by
#   python tools/align.py ids/ --folder-layout class --mode crop --out data/identities.lmdb
# (one class folder per identity) or by tools/pack_lmdb.py. Set the number
# of identities:
#   --cfg-options model.head.num_classes=N data_preprocessor.num_classes=N
_base_ = ['./faceres18_mvsoftmax_msceleb.py']

data_root = 'data/identities.lmdb'
# The dataset decodes the images itself: no loading step.
train_pipeline = [
    dict(type='Resize', scale=(256, 256)),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ExpressionLMDBDataset',
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
