# The DMUE schedule of the original's config.py: Adam with coupled weight
# decay 1e-4, two parameter groups and the original's per-epoch step table,
# 36 epochs.
#   trunk (backbone + auxiliary branches), lr1:
#       1e-4 (epochs 0-5), 5e-5 (6-11), 1e-5 (12-21), 5e-5 (22-24),
#       1e-5 (25-35)
#   classifier (fc, aux_fcs, uncertainty MLP, BN-neck), lr2 = 10 x lr1:
#       1e-3 (0-3), 5e-4 (4-7), 1e-4 (8-13), 1e-5 (14-21), 5e-5 (22-24),
#       1e-5 (25-35)
optim_wrapper = dict(
    constructor='DMUEOptimWrapperConstructor',
    optimizer=dict(type='Adam', lr=1e-4, weight_decay=1e-4),
    paramwise_cfg=dict(classifier_lr_mult=10.0),
)
param_scheduler = dict(
    type='GroupStepLR',
    by_epoch=True,
    steps=dict(
        trunk=[(0, 1.0), (6, 0.5), (12, 0.1), (22, 0.5), (25, 0.1)],
        classifier=[(0, 1.0), (4, 0.5), (8, 0.1), (14, 0.01), (22, 0.05),
                    (25, 0.01)],
    ),
)
train_cfg = dict(by_epoch=True, max_epochs=36, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# The original's total batch; --auto-scale-lr scales lr1 (and lr2 with it).
auto_scale_lr = dict(base_batch_size=72)
