# DMUE, face ResNet-18, RAF-DB basic (7 classes), ramp_a 10 (the author: 9 or
# 10). The released training (docs/recipes.md): MS-Celeb-1M initialisation,
# frozen uncertainty MLP and BN-neck affine, eval mode from iteration 200 of
# each epoch, evaluation every 200 iterations, singleton batches skipped, total
# batch 72. The paper's method: res18_rafdb_paper.py.
_base_ = [
    '../_base_/datasets/rafdb.py',
    '../_base_/models/dmue_faceres18_released.py',
    '../_base_/dmue_released.py',
]
model = dict(head=dict(num_classes={{_base_.num_classes}},
                       loss=dict(ramp_a=10)))
