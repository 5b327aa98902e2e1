# DMUE, face ResNet-18, FERPlus (8 classes), ramp_a 12
# (the released config comment: 10/12/14).
_base_ = [
    '../_base_/datasets/ferplus.py',
    '../_base_/models/dmue_faceres18.py',
    '../_base_/schedules/dmue_adam_36e.py',
    '../_base_/dmue_runtime.py',
]
model = dict(head=dict(num_classes={{_base_.num_classes}},
                       loss=dict(ramp_a=12)))
