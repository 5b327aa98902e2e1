# The released DMUE model on ResNet-50-IBN-a (no BN-neck): the uncertainty
# MLP frozen (released_code=True), the trunk (and every branch copy)
# loaded from MS-Celeb-1M pretraining. The authors released no ResNet-50-IBN
# pretraining: train configs/pretrain/r50ibn_mvsoftmax_msceleb.py and copy
# its last epoch_*.pth to pretrain/r50ibn_msceleb.pth (or convert an
# original-format R50-IBN MV-Softmax checkpoint with tools/convert.py
# msceleb). Strict loading; from scratch:
#   --cfg-options model.backbone.init_cfg.checkpoint=None
_base_ = ['./dmue_r50ibn.py']
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='pretrain/r50ibn_msceleb.pth',
            prefix='backbone.',
            pretrain_config='configs/pretrain/r50ibn_mvsoftmax_msceleb.py')),
    head=dict(released_code=True))
