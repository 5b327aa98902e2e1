# The released DMUE model on ResNet-50-IBN-a (no BN-neck): the uncertainty
# MLP frozen (released_code=True), the trunk (and every branch copy)
# loaded from MS-Celeb-1M pretraining: the file is made by
#   python tools/convert.py msceleb mv_epoch_17.pt \
#       -o pretrain/r50ibn_msceleb.pth
# (the authors' weights), or by training
# configs/pretrain/r50ibn_mvsoftmax_msceleb.py and copying its last
# epoch_*.pth there. Strict loading; from scratch:
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
