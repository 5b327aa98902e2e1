"""Every supported backbone family trains one DMUE iteration by changing
``model.backbone`` only (tiny widths and inputs)."""
import pytest
import torch
from dmue_testing import (EPS, loss_total, one_thread, samples,  # noqa
                          tiny_dmue)
from mmengine.optim import build_optim_wrapper

pytestmark = pytest.mark.numeric

K = 3
LABELS = [0, 1, 2, 2, 1, 0]

BACKBONES = {
    'resnet18': (dict(type='ResNet', depth=18, out_indices=(3, )), 32),
    'resnet50': (dict(type='ResNet', depth=50, base_channels=16,
                      stem_channels=16, out_indices=(3, )), 32),
    'face_resnet18': (dict(type='FaceResNet', depth=18, out_indices=(3, )),
                      32),
    'resnet18_cifar': (dict(type='ResNet_CIFAR', depth=18, base_channels=8,
                            out_indices=(3, )), 32),
    'resnet50_ibn': (dict(type='ResNetIBN', depth=50, base_channels=16,
                          stem_channels=16, out_indices=(3, )), 32),
    'mobilenet_v2': (dict(type='MobileNetV2', widen_factor=0.5), 32),
    'convnext': (dict(type='ConvNeXt', arch=dict(
        depths=[1, 1, 1, 1], channels=[8, 16, 24, 32])), 32),
    'vit': (dict(type='VisionTransformer', arch=dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=32, patch_size=8), 32),
    'swin': (dict(type='SwinTransformer', arch=dict(
        embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2]),
        img_size=64, window_size=2), 64),
}


@pytest.mark.parametrize('name', list(BACKBONES))
def test_trains_one_iteration_and_predicts(name):
    backbone, size = BACKBONES[name]
    torch.manual_seed(0)
    model = tiny_dmue(K, backbone=backbone).train()
    x = torch.randn(len(LABELS), 3, size, size)
    losses = model.loss(x, samples(LABELS))
    assert all(torch.isfinite(v).all() for v in losses.values())
    wrapper = build_optim_wrapper(
        model, dict(optimizer=dict(type='Adam', lr=1e-3)))
    before = [p.detach().clone() for p in model.head.branches.parameters()]
    wrapper.backward(loss_total(losses))
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing  # DDP needs no find_unused_parameters
    wrapper.step()
    after = list(model.head.branches.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    model.eval()
    with torch.no_grad():
        preds = model.predict(x)
    assert len(preds) == len(LABELS) and preds[0].pred_score.shape == (K, )


def test_vit_last_two_layers_as_branch():
    backbone, size = BACKBONES['vit']
    model = tiny_dmue(K, backbone=backbone)
    assert list(model.head.branches[0]) == ['layers_1', 'ln1']
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(
        type='DMUEClassifier', backbone=backbone,
        head=dict(type='DMUEHead', num_classes=K),
        adapter=dict(type='vit', num_layers=2)))
    assert list(model.head.branches[0]) == ['layers_0', 'layers_1', 'ln1']
    losses = model.loss(torch.randn(6, 3, size, size), samples(LABELS))
    assert torch.isfinite(loss_total(losses))


@pytest.mark.parametrize('name', list(BACKBONES))
def test_explicit_trunk_and_target_stage_equal_the_backbone(name):
    """The adapter's trunk + target stage is the backbone's own forward
    (pooled as the head pools it), for every family."""
    backbone, size = BACKBONES[name]
    torch.manual_seed(1)
    model = tiny_dmue(K, backbone=backbone).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = model.backbone(x)[-1]
        f = model.adapter.forward(x)
    if out.dim() == 4:  # CNN and Swin feature maps: global average pooling
        out = out.mean(dim=(2, 3))
    # identical operations; only the pooling's summation order may differ
    torch.testing.assert_close(f, out, rtol=0,
                               atol=64 * EPS * out.abs().max().item())
