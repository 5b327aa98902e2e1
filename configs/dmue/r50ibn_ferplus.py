# DMUE, ResNet-50-IBN-a (no BN-neck), FERPlus, ramp_a 12.
_base_ = [
    '../_base_/datasets/ferplus.py',
    '../_base_/models/dmue_r50ibn.py',
    '../_base_/schedules/dmue_adam_36e.py',
    '../_base_/dmue_runtime.py',
]
model = dict(head=dict(num_classes={{_base_.num_classes}},
                       loss=dict(ramp_a=12)))
