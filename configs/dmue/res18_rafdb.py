# DMUE, face ResNet-18, RAF-DB basic (7 classes), ramp_a 10
# (the author: 9 or 10).
_base_ = [
    '../_base_/datasets/rafdb.py',
    '../_base_/models/dmue_faceres18.py',
    '../_base_/schedules/dmue_adam_36e.py',
    '../_base_/dmue_runtime.py',
]
model = dict(head=dict(num_classes={{_base_.num_classes}},
                       loss=dict(ramp_a=10)))
