# Face-stem ResNet-18 + MV-Softmax (AM, m=0.35, t=1.12, s=32) pretraining,
# the backbone of the DMUE ResNet-18 recipes (docs/pretrain.md).
# The original trains with batch 512 on 2 GPUs; 4 GPUs x 128 here. Other
# setups: tools/train.py ... --auto-scale-lr scales lr 0.1 by batch / 512.
_base_ = ['./_base_/mvsoftmax_msceleb.py']

model = dict(
    type='ImageClassifier',
    backbone=dict(type='FaceResNet', depth=18, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='MVSoftmaxClsHead',
        num_classes={{_base_.num_classes}},
        in_channels=512,
        margin=0.35,
        mask_weight=1.12,
        scale=32.0,
        # True: cosine logits as in the paper; False: the released code,
        # which does not normalise the features.
        normalize_features=True,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
)

train_dataloader = dict(batch_size=128)
auto_scale_lr = dict(base_batch_size=512)
