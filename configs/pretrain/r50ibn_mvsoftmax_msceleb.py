# ResNet-50-IBN-a + MV-Softmax (AM, m=0.35, t=1.12, s=32) pretraining,
# the backbone of the DMUE ResNet-50-IBN recipes (docs/pretrain.md).
# The original trains with batch 256 on 4 GPUs: 4 GPUs x 64 here. Other
# setups: tools/train.py ... --auto-scale-lr scales lr 0.1 by batch / 256.
_base_ = ['./faceres18_mvsoftmax_msceleb.py']

model = dict(
    backbone=dict(_delete_=True, type='ResNetIBN', depth=50,
                  out_indices=(3, )),
    head=dict(in_channels=2048),
)

train_dataloader = dict(batch_size=64)
auto_scale_lr = dict(base_batch_size=256)
