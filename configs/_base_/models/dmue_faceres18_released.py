# The released DMUE model on the face ResNet-18: the uncertainty MLP and the
# BN-neck affine frozen (released_code=True), the trunk (and so every branch
# copy) loaded from face-recognition pretraining on MS-Celeb-1M. The file is
# made by
#   python tools/convert.py msceleb mv_epoch_17.pt \
#       -o pretrain/faceres18_msceleb.pth
# (the authors' weights), or by training
# configs/pretrain/faceres18_mvsoftmax_msceleb.py and copying its last
# epoch_*.pth there. Loading is strict (StrictPretrained): a missing file,
# a wrong prefix or a wrong shape fails before training. From scratch:
#   --cfg-options model.backbone.init_cfg.checkpoint=None
_base_ = ['./dmue_faceres18.py']
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='pretrain/faceres18_msceleb.pth',
            prefix='backbone.',
            pretrain_config='configs/pretrain/faceres18_mvsoftmax_msceleb.py'
        )),
    head=dict(released_code=True))
