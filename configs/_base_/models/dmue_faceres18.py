# DMUE on the original-stem face ResNet-18 (docs/backbones.md): the backbone's
# layer4 is the target branch, the head holds K auxiliary copies of it, the
# shared BN-neck, the bias-free classifiers and the uncertainty MLP.
# Every head key is shown with its default; see docs/head.md.
model = dict(
    type='DMUEClassifier',
    backbone=dict(type='FaceResNet', depth=18, out_indices=(3, )),
    head=dict(
        type='DMUEHead',
        num_classes=8,
        loss=dict(
            type='DMUELoss',
            soft_weight=0.5,  # w
            sp_weight=1000.0,  # gamma
            temperature=1.2,  # T
            ramp_a=6,  # alpha: AffectNet 6, RAF-DB 10, FERPlus 10/12/14
        ),
        dropout=0.5,
        bnneck=True,
        global_stats=False,  # True: pairwise statistics over all DDP ranks
        released_code=False,  # True: frozen uncertainty MLP and BN-neck
    ),
)
