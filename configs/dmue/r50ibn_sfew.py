# DMUE, ResNet-50-IBN-a (no BN-neck, as released), SFEW 2.0 (7 classes), ramp_a
# 10 (no released value: as RAF-DB). The released training (docs/recipes.md):
# MS-Celeb-1M initialisation, frozen uncertainty MLP and BN-neck affine, eval
# mode from iteration 200 of each epoch, evaluation every 200 iterations,
# singleton batches skipped, total batch 72. The paper's method:
# r50ibn_sfew_paper.py.
_base_ = [
    '../_base_/datasets/sfew.py',
    '../_base_/models/dmue_r50ibn_released.py',
    '../_base_/dmue_released.py',
]
model = dict(head=dict(num_classes={{_base_.num_classes}},
                       loss=dict(ramp_a=10)))
