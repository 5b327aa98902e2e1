# DMUE on ResNet-50-IBN-a (spec §1.1): as the released config, no BN-neck.
_base_ = ['./dmue_faceres18.py']
model = dict(
    backbone=dict(_delete_=True, type='ResNetIBN', depth=50,
                  out_indices=(3, )),
    head=dict(bnneck=False),
)
