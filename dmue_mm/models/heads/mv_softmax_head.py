"""MV-Softmax classification head (mis-classified vector guided softmax).

Wang et al., "Mis-classified Vector Guided Softmax Loss for Face Recognition"
(AAAI 2020), in the AM form used by FaceX-Zoo and by the MS-Celeb-1M
pretraining of DMUE (margin 0.35, mask t 1.12, scale 32;
``docs/pretrain.md``). With ``cos_k`` the cosine between the
feature and the L2-normalised weight of class ``k`` and ``y`` the label:

* target logit: ``cos_y - m`` (released code: only where ``cos_y > m``,
  otherwise ``cos_y``; see ``easy_margin``);
* hard negatives, ``cos_k > cos_y - m``: ``t * cos_k + t - 1``;
* easy negatives: ``cos_k``;

everything multiplied by the scale ``s``; the loss is the cross-entropy of
these logits. At inference the logits are ``s * cos``.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.runner import autocast
from mmpretrain.models.heads import ClsHead
from mmpretrain.models.heads.margin_head import NormProduct
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

__all__ = ['MVSoftmaxClsHead', 'mv_softmax_logits']


def mv_softmax_logits(cosine: torch.Tensor,
                      target: torch.Tensor,
                      margin: float,
                      mask_weight: float,
                      easy_margin: bool = True) -> torch.Tensor:
    """Apply the AM MV-Softmax rule to a cosine matrix (before scaling).

    Args:
        cosine (Tensor): (N, C) products of features and normalised class
            weights.
        target (Tensor): (N, ) class indices.
        margin (float): Additive cosine margin ``m``.
        mask_weight (float): ``t`` of the hard-negative re-weighting.
        easy_margin (bool): Subtract the margin only where the target cosine
            exceeds it, as the released FaceX-Zoo/DMUE code does.

    Returns:
        Tensor: (N, C) modified cosines; multiply by the scale for logits.
    """
    target = target.view(-1, 1)
    gt = cosine.gather(1, target)
    hard = cosine > gt - margin
    out = torch.where(hard, mask_weight * cosine + mask_weight - 1.0, cosine)
    gt_margin = gt - margin
    if easy_margin:
        gt_margin = torch.where(gt > margin, gt_margin, gt)
    return out.scatter(1, target, gt_margin)


@MODELS.register_module()
class MVSoftmaxClsHead(ClsHead):
    """MV-Softmax (AM variant) head for identity classification.

    A drop-in alternative to MMPretrain's ``ArcFaceClsHead`` (same
    ``norm_product`` weight, (num_classes, in_channels), one row per class
    normalised). The original FaceX-Zoo layer stores the transposed matrix
    (``loss_layer.weight``, in_channels x num_classes).

    Args:
        num_classes (int): Number of identities.
        in_channels (int): Feature width (512 for ResNet-18, 2048 for
            ResNet-50-IBN).
        margin (float): Cosine margin ``m``. Defaults to 0.35.
        mask_weight (float): Hard-negative weight ``t`` (>= 1).
            Defaults to 1.12.
        scale (float): Logit scale ``s``. Defaults to 32.
        normalize_features (bool): L2-normalise the features, so that the
            products are cosines as in the paper. Defaults to True. The
            released DMUE pretraining (``pretrain/loss_def.py``) does not
            normalise them (a comment there says it does); set False to
            reproduce it.
        easy_margin (bool): As the released code, subtract the margin only
            where the target cosine exceeds it. Defaults to True.
        loss (dict): Loss on the modified logits. Defaults to
            cross-entropy.
        topk (int | tuple): Top-k of the training accuracy (``cal_acc``).
        cal_acc (bool): Log the training accuracy on the modified logits.
            Defaults to False.
        init_cfg (dict, optional): Initialisation config. Defaults to None
            (PyTorch's Linear init; only the weight directions matter).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 margin: float = 0.35,
                 mask_weight: float = 1.12,
                 scale: float = 32.0,
                 normalize_features: bool = True,
                 easy_margin: bool = True,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 topk=(1, ),
                 cal_acc: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            loss=loss, topk=topk, cal_acc=cal_acc, init_cfg=init_cfg)
        for name, value in (('num_classes', num_classes),
                            ('in_channels', in_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f'MVSoftmaxClsHead: {name} must be a '
                                 f'positive integer, got {value!r}')
        if margin < 0:
            raise ValueError(
                f'MVSoftmaxClsHead: margin must be >= 0, got {margin}')
        if mask_weight < 1:
            raise ValueError('MVSoftmaxClsHead: mask_weight (t) must be >= 1 '
                             f'(1 disables the re-weighting), got '
                             f'{mask_weight}')
        if scale <= 0:
            raise ValueError(
                f'MVSoftmaxClsHead: scale must be > 0, got {scale}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.margin = float(margin)
        self.mask_weight = float(mask_weight)
        self.scale = float(scale)
        self.normalize_features = normalize_features
        self.easy_margin = easy_margin
        self.norm_product = NormProduct(
            in_channels, num_classes, feature_norm=normalize_features)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The identity embedding: the last stage's pooled feature."""
        return feats[-1]

    def forward(self,
                feats: Tuple[torch.Tensor],
                target: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scaled logits; with ``target`` the MV-Softmax ones.

        Computed in float32 with autocast off (margins on bf16/fp16 cosines
        are too coarse), like MMPretrain's ArcFace head.

        Args:
            feats (tuple[Tensor]): Neck outputs; the last one is (N, C).
            target (Tensor, optional): (N, ) class indices.

        Returns:
            Tensor: (N, num_classes) logits.
        """
        with autocast(enabled=False):
            cosine = self.norm_product(self.pre_logits(feats).float())
            if target is not None:
                cosine = mv_softmax_logits(cosine, target, self.margin,
                                           self.mask_weight, self.easy_margin)
        return self.scale * cosine

    def loss(self, feats: Tuple[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> dict:
        """Cross-entropy (the configured loss) of the MV-Softmax logits.

        Args:
            feats (tuple[Tensor]): Neck outputs.
            data_samples (list[DataSample]): Samples with ``gt_label``.
            **kwargs: Passed to the loss module.

        Returns:
            dict[str, Tensor]: ``loss`` (and training accuracy with
            ``cal_acc``).
        """
        if any('gt_label' not in sample for sample in data_samples):
            raise ValueError('MVSoftmaxClsHead needs an integer gt_label per '
                             'sample (batch augmentations that only give '
                             'gt_score, such as Mixup, are not supported)')
        target = torch.cat([sample.gt_label for sample in data_samples])
        cls_score = self(feats, target)
        return self._get_loss(cls_score, data_samples, **kwargs)
