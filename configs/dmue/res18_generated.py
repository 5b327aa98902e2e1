# DMUE on a generated 7-class image folder (tests and demos; no real data):
# MMPretrain's ResNet-18 on 32x32 images, the DMUE schedule shortened to 2
# epochs. Point it at a folder written by dmue_mm.utils.write_image_folder:
# --cfg-options train_dataloader.dataset.data_root=DIR \
# val_dataloader.dataset.data_root=DIR \
# test_dataloader.dataset.data_root=DIR
_base_ = [
    '../_base_/datasets/generated_folder.py',
    '../_base_/models/dmue_faceres18.py',
    '../_base_/schedules/dmue_adam_36e.py',
    '../_base_/default_runtime.py',
]
num_classes = 7
data_preprocessor = dict(num_classes=num_classes)
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        base_channels=64,
        stem_channels=64,
        out_indices=(3, )),
    # 512-d features of tiny images: keep gamma * L_sp near 0.1 at the start
    head=dict(
        num_classes=num_classes, loss=dict(ramp_a=1, sp_weight=100.0)),
)
train_cfg = dict(max_epochs=2)
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0)
