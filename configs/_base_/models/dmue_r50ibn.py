# DMUE on ResNet-50-IBN-a: as the original's released config, no BN-neck.
_base_ = ['./dmue_faceres18.py']
model = dict(
    backbone=dict(_delete_=True, type='ResNetIBN', depth=50,
                  out_indices=(3, )),
    head=dict(bnneck=False),
)
